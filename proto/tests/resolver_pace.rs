//! How the router paces a watched resolver: a new set is followed by a
//! new question at once; an answer with nothing new is asked again at once
//! if the resolver waited for news before giving it, and after a backoff
//! if it answered at once (which would otherwise spin).

use std::time::{Duration, Instant};
use weft_proto::{
    Action, EndpointsVersion, PoolConfig, Resolution, ResolverKind, RoundRobin, Router,
};

fn router(now: Instant) -> Router {
    let initial = Resolution {
        addrs: vec!["a".into()],
        version: Some(EndpointsVersion(1)),
    };
    Router::new(
        now,
        PoolConfig::default(),
        Box::new(RoundRobin::new()),
        ResolverKind::Watched,
        initial,
    )
    .unwrap()
}

/// The questions put to the resolver so far.
fn asked(r: &mut Router) -> usize {
    std::iter::from_fn(|| r.poll_action())
        .filter(|a| matches!(a, Action::Resolve { .. }))
        .count()
}

fn same(version: u64) -> Resolution {
    Resolution {
        addrs: vec!["a".into()],
        version: Some(EndpointsVersion(version)),
    }
}

#[test]
fn a_resolver_that_waited_for_news_is_asked_again_at_once() {
    let t0 = Instant::now();
    let mut r = router(t0);
    assert_eq!(asked(&mut r), 1);
    // Five quiet seconds, nothing new, forty times over: never a pause.
    let mut now = t0;
    for _ in 0..40 {
        now += Duration::from_secs(5);
        r.handle_resolved(now, same(1));
        assert_eq!(asked(&mut r), 1, "asked again at once");
    }
}

#[test]
fn a_resolver_that_answers_nothing_new_at_once_is_backed_off() {
    let t0 = Instant::now();
    let mut r = router(t0);
    assert_eq!(asked(&mut r), 1);
    let now = t0 + Duration::from_millis(1);
    r.handle_resolved(now, same(1));
    assert_eq!(asked(&mut r), 0, "not at once");
    let due = r.poll_timeout().expect("asked again later");
    assert!(due > now);
    r.handle_timeout(due);
    assert_eq!(asked(&mut r), 1);
}
