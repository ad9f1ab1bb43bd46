//! The same frames over bare Tokio sockets, with no RPC machinery: Tokio's
//! own floor for one call in flight, to tell what weft-tokio adds from what
//! Tokio costs (`WEFT_RAW_SHAPE=tokio` for the client,
//! `WEFT_RAW_SERVER=tokio` for `weft raw-echo`; each a default multi-thread
//! runtime, as `#[tokio::main]` gives it).

use std::io;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weft_proto::NetEndpoint;

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Ping-pong from a task on a default multi-thread runtime: write the
/// request, read the response, as the blocking `ping_pong` does.
pub fn ping_pong(
    addr: &NetEndpoint,
    request: &[u8],
    response_len: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let rt = runtime()?;
    let (addr, request) = (addr.clone(), request.to_vec());
    rt.block_on(async move {
        tokio::spawn(async move {
            match addr {
                NetEndpoint::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    pings(s, &request, response_len, duration).await
                }
                NetEndpoint::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await?;
                    pings(s, &request, response_len, duration).await
                }
            }
        })
        .await
        .map_err(io::Error::other)?
    })
}

async fn pings(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    request: &[u8],
    response_len: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let mut buf = vec![0u8; response_len];
    let mut lat = Vec::with_capacity(1 << 20);
    let end = Instant::now() + duration;
    let mut t = Instant::now();
    while t < end {
        s.write_all(request).await?;
        s.read_exact(&mut buf).await?;
        let now = Instant::now();
        lat.push(now.duration_since(t).as_nanos() as u64);
        t = now;
    }
    let n = lat.len() as u64;
    Ok((lat, n))
}

/// Echoes every request frame as a response frame, one task per
/// connection, replies written once the input read so far is used up.
pub fn serve(addr: &NetEndpoint) -> io::Result<()> {
    let rt = runtime()?;
    let addr = addr.clone();
    rt.block_on(async move {
        match addr {
            NetEndpoint::Tcp(a) => {
                let l = tokio::net::TcpListener::bind(a).await?;
                println!("listening tcp://{}", l.local_addr()?);
                loop {
                    let (s, _) = l.accept().await?;
                    s.set_nodelay(true)?;
                    tokio::spawn(echo(s));
                }
            }
            NetEndpoint::Unix(p) => {
                let l = tokio::net::UnixListener::bind(&p)?;
                println!("listening unix://{}", p.display());
                loop {
                    let (s, _) = l.accept().await?;
                    tokio::spawn(echo(s));
                }
            }
        }
    })
}

async fn echo(mut s: impl AsyncRead + AsyncWrite + Unpin) -> io::Result<()> {
    let mut input = Vec::with_capacity(256 * 1024);
    let mut reply = Vec::with_capacity(256 * 1024);
    loop {
        if s.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut used = 0;
        // Whole frames: a 16-byte header whose second word carries the
        // payload length above its low byte.
        while let Some(header) = input.get(used..used + 16) {
            let word = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
            let len = (word >> 8) as usize;
            let Some(payload) = input.get(used + 16..used + 16 + len) else {
                break;
            };
            let hlen = payload
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")) as usize);
            let args = payload.get(4 + hlen..).unwrap_or(&[]);
            reply.extend_from_slice(&header[..8]);
            reply.extend_from_slice(&(2u64 | ((args.len() as u64) << 8)).to_le_bytes());
            reply.extend_from_slice(args);
            used += 16 + len;
        }
        input.drain(..used);
        s.write_all(&reply).await?;
        reply.clear();
    }
}
