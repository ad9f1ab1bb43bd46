//! How the router follows a watched resolver: a new set is followed by a
//! new question at once; an answer with nothing new is asked again at once
//! if the resolver waited for news before giving it, and after a backoff
//! if it answered at once (which would otherwise spin). A resolver's
//! failure is part of the error of a call no replica can take.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_proto::{
    Action, CallError, CallOptions, EndpointsVersion, MethodKey, PoolConfig, PoolEvent, Resolution,
    ResolverKind, RoundRobin, Router,
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

#[test]
fn a_call_no_replica_can_take_says_the_resolver_failed() {
    let t0 = Instant::now();
    let empty = Resolution {
        addrs: vec![],
        version: Some(EndpointsVersion(1)),
    };
    let mut r = Router::new(
        t0,
        PoolConfig::default(),
        Box::new(RoundRobin::new()),
        ResolverKind::Watched,
        empty,
    )
    .unwrap();
    let call = |r: &mut Router| {
        let key = MethodKey::new("weft.Test", "Echo");
        r.start_call(t0, key, Bytes::new(), CallOptions::default());
        match r.poll_event() {
            Some(PoolEvent::Done {
                result: Err(CallError::Unreachable(why)),
                ..
            }) => why,
            other => panic!("{other:?}"),
        }
    };
    r.handle_resolve_failed(t0, "dns \"cart\": timed out");
    assert_eq!(
        call(&mut r),
        "the resolver names no endpoints; resolver failed: dns \"cart\": timed out"
    );
    // Answered since: the failure is no longer the news.
    r.handle_resolved(t0, same(1));
    assert_eq!(call(&mut r), "the resolver names no endpoints");
}
