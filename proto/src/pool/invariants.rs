//! Service Weaver's replica invariants, checked after every transition in
//! debug builds and by the model tests.

use super::ReplicaState;
use super::router::Router;

impl Router {
    /// Checks Service Weaver's replica invariants; panics if one fails.
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        use ReplicaState::*;
        let mut live = 0;
        for (slot, r) in self.replicas.iter().enumerate() {
            let Some(r) = r else { continue };
            live += 1;
            let s = r.state;
            assert_ne!(s, Missing, "{}: a missing replica is still stored", r.addr);
            assert_eq!(
                self.by_addr.get(&r.addr),
                Some(&slot),
                "{}: table entry",
                r.addr
            );
            assert_eq!(
                r.conn.is_some(),
                matches!(s, Checking | Idle | Active | Draining),
                "{}: {s:?} with connection {}",
                r.addr,
                r.conn.is_some()
            );
            for conn in r.conn.iter().chain(&r.dialing) {
                assert_eq!(
                    self.conns.get(&conn.0),
                    Some(&slot),
                    "{}: conn table",
                    r.addr
                );
            }
            let in_balancer = self.ready.iter().any(|e| e.id == r.id);
            assert_eq!(
                in_balancer,
                matches!(s, Idle | Active) && !r.congested,
                "{}: {s:?} balancer (congested {})",
                r.addr,
                r.congested
            );
            assert_eq!(
                !r.calls.is_empty(),
                matches!(s, Active | Draining),
                "{}: {s:?} with {} calls",
                r.addr,
                r.calls.len()
            );
            assert!(
                r.dialing.is_none() || s == Disconnected,
                "{}: dialing in {s:?}",
                r.addr
            );
            if let Some(e) = self.ready.iter().find(|e| e.id == r.id) {
                assert_eq!(
                    e.in_flight,
                    r.calls.len(),
                    "{}: balancer's call count",
                    r.addr
                );
            }
        }
        assert_eq!(live, self.by_addr.len(), "table size");
        assert!(
            self.ready.windows(2).all(|w| w[0].id < w[1].id),
            "ready order"
        );
        for (id, c) in &self.calls {
            if let Some((slot, conn)) = c.placed {
                let r = self.replicas[slot]
                    .as_ref()
                    .expect("placed on a live replica");
                assert!(r.calls.contains_key(id), "call {id} placement");
                assert_eq!(r.conn, Some(conn), "call {id} connection");
            }
        }
    }
}
