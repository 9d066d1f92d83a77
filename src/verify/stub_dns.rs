//! A tiny authoritative DNS server on a loopback UDP port, for tests and
//! benchmarks of sender verification: it answers TXT and A questions from
//! a zone the test fills (DKIM keys, DMARC and SPF records), NXDOMAIN for
//! anything else, SERVFAIL or silence for names told to fail. refundd
//! reaches it through the real resolver path (`[sender_auth] resolver =
//! "127.0.0.1:PORT"`).
//!
//! - Never: listens on anything but 127.0.0.1, or forwards a question.
//! - Fails: only when the port cannot be bound; a bad question is dropped.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Zone {
    txt: HashMap<String, Vec<String>>,
    a: HashMap<String, Vec<Ipv4Addr>>,
    silent: HashSet<String>,
    servfail: HashSet<String>,
}

/// The running server; dropping it stops it.
pub struct StubDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Time to live of every answer, in seconds.
pub const TTL: u32 = 300;

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl StubDns {
    /// Binds 127.0.0.1 on a free port and starts answering.
    pub async fn start() -> std::io::Result<StubDns> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = socket.local_addr()?;
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(socket, Arc::clone(&zone), Arc::clone(&queries)));
        Ok(StubDns {
            addr,
            zone,
            queries,
            task,
        })
    }

    /// Where it listens (`resolver = "<this>"`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a TXT record (long texts are split into 255-byte strings).
    pub fn txt(&self, name: &str, text: &str) {
        self.zone()
            .txt
            .entry(key(name))
            .or_default()
            .push(text.to_owned());
    }

    /// Adds an A record.
    pub fn a(&self, name: &str, ip: Ipv4Addr) {
        self.zone().a.entry(key(name)).or_default().push(ip);
    }

    /// Questions about `name` are never answered (the client times out).
    pub fn silent(&self, name: &str) {
        self.zone().silent.insert(key(name));
    }

    /// Questions about `name` get SERVFAIL.
    pub fn servfail(&self, name: &str) {
        self.zone().servfail.insert(key(name));
    }

    /// Questions received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>, queries: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        queries.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let answer = {
            let zone = zone.lock().unwrap_or_else(|e| e.into_inner());
            answer(&request, &zone)
        };
        if let Some(bytes) = answer.and_then(|m| m.to_vec().ok()) {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

fn answer(request: &Message, zone: &Zone) -> Option<Message> {
    let query = request.queries.first()?;
    let name = key(&query.name().to_ascii());
    if zone.silent.contains(&name) {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_query(query.clone());
    if let Some(edns) = &request.edns {
        response.set_edns(edns.clone());
    }
    if zone.servfail.contains(&name) {
        response.metadata.response_code = ResponseCode::ServFail;
        return Some(response);
    }
    let owner = query.name().clone();
    let records: Vec<Record> = match query.query_type() {
        RecordType::TXT => zone
            .txt
            .get(&name)
            .into_iter()
            .flatten()
            .map(|text| {
                let chunks = text
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                Record::from_rdata(owner.clone(), TTL, RData::TXT(TXT::new(chunks)))
            })
            .collect(),
        RecordType::A => zone
            .a
            .get(&name)
            .into_iter()
            .flatten()
            .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip))))
            .collect(),
        _ => Vec::new(),
    };
    let known = zone.txt.contains_key(&name) || zone.a.contains_key(&name);
    if records.is_empty() {
        if !known {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        // Like a real server: the SOA lets resolvers cache the negative
        // answer (RFC 2308).
        let soa = SOA::new(
            Name::from_ascii("ns.stub.test.").expect("a valid name"),
            Name::from_ascii("hostmaster.stub.test.").expect("a valid name"),
            1,
            3600,
            600,
            86400,
            TTL,
        );
        response.add_authority(Record::from_rdata(Name::root(), TTL, RData::SOA(soa)));
    }
    response.add_answers(records);
    Some(response)
}
