//! A DNS server on loopback for the discovery tests: it answers A and SRV
//! queries from records the test changes while clients run (hickory-proto
//! for the messages; the resolver under test is hickory-resolver).

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct Records {
    a: HashMap<String, Vec<Ipv4Addr>>,
    /// (priority, port, target host) each.
    srv: HashMap<String, Vec<(u16, u16, String)>>,
    /// Names answered with one of their addresses, a different one each
    /// time (as some DNS services answer with a random subset).
    rotating: HashMap<String, (Vec<Ipv4Addr>, usize)>,
    /// A queries answered.
    a_queries: usize,
}

/// The server; stopped when dropped.
pub struct TestDns {
    addr: SocketAddr,
    records: Arc<Mutex<Records>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The TTL of every answer: zero, so clients look again at their minimum.
const TTL: u32 = 0;

impl TestDns {
    /// Starts a server on 127.0.0.1 (a free UDP port).
    pub fn start() -> TestDns {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("dns bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Records::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        let thread = thread::spawn(move || serve(sock, &r, &s));
        TestDns {
            addr,
            records,
            stop,
            thread: Some(thread),
        }
    }

    /// Where to send queries.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces `name`'s A records.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.records
            .lock()
            .unwrap()
            .a
            .insert(key(name), ips.to_vec());
    }

    /// Answers `name` with one of `ips` at a time, the next on each query.
    pub fn set_a_rotating(&self, name: &str, ips: &[Ipv4Addr]) {
        self.records
            .lock()
            .unwrap()
            .rotating
            .insert(key(name), (ips.to_vec(), 0));
    }

    /// A queries answered so far.
    pub fn a_queries(&self) -> usize {
        self.records.lock().unwrap().a_queries
    }

    /// Replaces `name`'s SRV records: (port, target host) each, all of
    /// priority 0.
    pub fn set_srv(&self, name: &str, targets: &[(u16, &str)]) {
        let v: Vec<_> = targets.iter().map(|(p, t)| (0, *p, *t)).collect();
        self.set_srv_prioritized(name, &v);
    }

    /// Replaces `name`'s SRV records: (priority, port, target host) each.
    pub fn set_srv_prioritized(&self, name: &str, targets: &[(u16, u16, &str)]) {
        let v = targets
            .iter()
            .map(|(prio, p, t)| (*prio, *p, t.to_string()))
            .collect();
        self.records.lock().unwrap().srv.insert(key(name), v);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: UdpSocket, records: &Mutex<Records>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut resp = Message::response(query.metadata.id, OpCode::Query);
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = query.metadata.recursion_desired;
        for q in &query.queries {
            resp.add_query(q.clone());
            let name = q.name().clone();
            let mut recs = records.lock().unwrap();
            match q.query_type() {
                RecordType::A => {
                    recs.a_queries += 1;
                    let k = key(&name.to_utf8());
                    if let Some((ips, next)) = recs.rotating.get_mut(&k) {
                        let ip = ips[*next % ips.len()];
                        *next += 1;
                        resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))));
                    }
                    for ip in recs.a.get(&k).into_iter().flatten() {
                        resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))));
                    }
                }
                RecordType::SRV => {
                    for (priority, port, target) in
                        recs.srv.get(&key(&name.to_utf8())).into_iter().flatten()
                    {
                        let target = Name::from_utf8(target).expect("srv target");
                        let srv = SRV::new(*priority, 0, *port, target);
                        resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::SRV(srv)));
                    }
                }
                _ => {}
            }
        }
        if let Ok(bytes) = resp.to_vec() {
            let _ = sock.send_to(&bytes, peer);
        }
    }
}
