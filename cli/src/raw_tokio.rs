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
        // Whole frames, each answered as the blocking echo answers it.
        while let Some(header) = input.get(used..used + 16) {
            let header: &[u8; 16] = header.try_into().expect("16 bytes");
            let len = crate::raw::payload_len(header);
            let Some(payload) = input.get(used + 16..used + 16 + len) else {
                break;
            };
            crate::raw::push_reply(header, payload, &mut reply);
            used += 16 + len;
        }
        input.drain(..used);
        s.write_all(&reply).await?;
        reply.clear();
    }
}
