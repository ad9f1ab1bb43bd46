//! weft-tests: one harness over both drivers, so every scenario runs for
//! every client driver x server driver x transport.
//!
//! ```
//! use weft_tests::{Driver, TestClient, TestServer, Transport};
//! let server = TestServer::start(Driver::Mio, Transport::Tcp, "s");
//! let client = TestClient::connect(Driver::Tokio, vec![server.endpoint.clone()]).unwrap();
//! let out = client.call("Echo", "hi", Default::default()).unwrap();
//! assert_eq!(&out[..], b"hi");
//! client.close();
//! server.stop();
//! ```

pub mod dns;
mod load;

pub use load::{Load, LoadReport};

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use weft_cli::service::{COMPONENT, Service, mio_handlers, tokio_handlers};
use weft_proto::{CallError, CallOptions, MethodKey, NetEndpoint};
pub use weft_tokio::{ClientOptions, ServerOptions};

/// Which driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// weft-tokio.
    Tokio,
    /// weft-mio.
    Mio,
}

/// Which socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP on 127.0.0.1.
    Tcp,
    /// A Unix socket in a temp dir.
    Unix,
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime"),
    )
}

/// A fresh endpoint to bind for `transport`; Unix sockets go in a temp dir
/// removed when the server stops.
fn bind_endpoint(transport: Transport) -> (NetEndpoint, Option<std::path::PathBuf>) {
    match transport {
        Transport::Tcp => (NetEndpoint::Tcp("127.0.0.1:0".into()), None),
        Transport::Unix => {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("weft-conf-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            (NetEndpoint::Unix(dir.join("s.sock")), Some(dir))
        }
    }
}

enum ServerImpl {
    Tokio {
        rt: Arc<tokio::runtime::Runtime>,
        shutdown: weft_tokio::Shutdown,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    },
    Mio(weft_mio::Server),
}

/// A server of the `weft.Test` service on either driver.
pub struct TestServer {
    /// Where clients dial it.
    pub endpoint: NetEndpoint,
    /// Its handlers' state (cancellation counter).
    pub service: Arc<Service>,
    inner: ServerImpl,
    dir: Option<std::path::PathBuf>,
}

impl TestServer {
    /// Starts a server named `name`.
    pub fn start(driver: Driver, transport: Transport, name: &str) -> TestServer {
        Self::start_with(driver, transport, name, ServerOptions::default())
    }

    /// Starts a server named `name` with `opts` (the same type for both
    /// drivers).
    pub fn start_with(
        driver: Driver,
        transport: Transport,
        name: &str,
        opts: ServerOptions,
    ) -> TestServer {
        Self::start_impl(driver, transport, name, opts, None)
    }

    /// Starts a server named `name` that serves under TLS.
    pub fn start_tls(
        driver: Driver,
        transport: Transport,
        name: &str,
        tls: weft_tokio::tls::ServerTls,
    ) -> TestServer {
        Self::start_impl(driver, transport, name, ServerOptions::default(), Some(tls))
    }

    fn start_impl(
        driver: Driver,
        transport: Transport,
        name: &str,
        opts: ServerOptions,
        tls: Option<weft_tokio::tls::ServerTls>,
    ) -> TestServer {
        let (bind, dir) = bind_endpoint(transport);
        let mut server = Self::start_on_impl(driver, &bind, name, opts, tls);
        server.dir = dir;
        server
    }

    /// Starts a server named `name` on `bind` exactly (a restarted
    /// server takes its predecessor's address).
    pub fn start_on(
        driver: Driver,
        bind: &NetEndpoint,
        name: &str,
        opts: ServerOptions,
    ) -> TestServer {
        Self::start_on_impl(driver, bind, name, opts, None)
    }

    /// Starts a server named `name` on `bind` exactly, serving TLS.
    pub fn start_tls_on(
        driver: Driver,
        bind: &NetEndpoint,
        name: &str,
        tls: weft_tokio::tls::ServerTls,
    ) -> TestServer {
        Self::start_on_impl(driver, bind, name, ServerOptions::default(), Some(tls))
    }

    fn start_on_impl(
        driver: Driver,
        bind: &NetEndpoint,
        name: &str,
        opts: ServerOptions,
        tls: Option<weft_tokio::tls::ServerTls>,
    ) -> TestServer {
        let dir = None;
        let service = Service::new(name);
        let (endpoint, inner) = match driver {
            Driver::Tokio => {
                let rt = runtime();
                let mut listener = rt.block_on(weft_tokio::Listener::bind(bind)).expect("bind");
                if let Some(tls) = &tls {
                    listener = listener.tls(tls);
                }
                let endpoint = listener.local_endpoint().expect("local endpoint");
                let shutdown = weft_tokio::Shutdown::new();
                let handlers = tokio_handlers(&service);
                let task = rt.spawn(weft_tokio::serve_with_shutdown(
                    listener,
                    handlers,
                    opts,
                    shutdown.clone(),
                ));
                (endpoint, ServerImpl::Tokio { rt, shutdown, task })
            }
            Driver::Mio => {
                let handlers = mio_handlers(&service);
                let server = match tls {
                    Some(tls) => weft_mio::Server::bind_tls(bind, tls, handlers, opts),
                    None => weft_mio::Server::bind(bind, handlers, opts),
                }
                .expect("bind");
                (server.local_endpoint().clone(), ServerImpl::Mio(server))
            }
        };
        TestServer {
            endpoint,
            service,
            inner,
            dir,
        }
    }

    /// Stops the server at once: closes its connections (cancelling their
    /// handlers) and waits for it. The returned guard keeps a tokio
    /// server's runtime alive, so handlers that were told to stop can still
    /// finish; drop it when done.
    pub fn stop(self) -> Stopped {
        self.handle().immediate();
        self.wait_stopped()
    }

    /// The trigger of the server's shutdown, usable from any thread while
    /// [`shutdown`](Self::shutdown) waits.
    pub fn handle(&self) -> weft_tokio::Shutdown {
        match &self.inner {
            ServerImpl::Tokio { shutdown, .. } => shutdown.clone(),
            ServerImpl::Mio(s) => s.shutdown_handle(),
        }
    }

    /// Shuts the server down gracefully with `grace`, and waits until it
    /// has stopped.
    pub fn shutdown(self, grace: std::time::Duration) -> Stopped {
        self.handle().graceful(grace);
        self.wait_stopped()
    }

    fn wait_stopped(self) -> Stopped {
        let rt = match self.inner {
            ServerImpl::Tokio { rt, task, .. } => {
                rt.block_on(task).expect("join").expect("serve");
                Some(rt)
            }
            ServerImpl::Mio(s) => {
                s.shutdown();
                None
            }
        };
        if let Some(d) = self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        Stopped { _runtime: rt }
    }
}

/// What is left of a stopped server (see [`TestServer::stop`]).
pub struct Stopped {
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

enum ClientImpl {
    Tokio {
        rt: Arc<tokio::runtime::Runtime>,
        conn: weft_tokio::Connection,
    },
    Mio(weft_mio::Client),
}

/// A client on either driver.
pub struct TestClient {
    inner: ClientImpl,
}

/// A settable endpoint set for both drivers' clients.
#[derive(Clone, Default)]
pub struct Dynamic {
    tokio: weft_tokio::DynamicResolver,
    mio: weft_mio::DynamicResolver,
}

impl Dynamic {
    /// Replaces the endpoint set.
    pub fn set(&self, endpoints: &[NetEndpoint]) {
        self.tokio.set(endpoints.iter().cloned());
        self.mio.set(endpoints.iter().cloned());
    }
}

impl TestClient {
    /// A client of a constant endpoint set.
    pub fn connect(driver: Driver, endpoints: Vec<NetEndpoint>) -> Result<TestClient, CallError> {
        Self::connect_with(driver, endpoints, ClientOptions::default())
    }

    /// A client of a constant endpoint set with `opts` (the same type for
    /// both drivers).
    pub fn connect_with(
        driver: Driver,
        endpoints: Vec<NetEndpoint>,
        opts: ClientOptions,
    ) -> Result<TestClient, CallError> {
        let inner = match driver {
            Driver::Tokio => {
                let rt = runtime();
                let resolver = weft_tokio::ConstantResolver::new(endpoints);
                let conn = rt.block_on(weft_tokio::connect(resolver, opts))?;
                ClientImpl::Tokio { rt, conn }
            }
            Driver::Mio => ClientImpl::Mio(weft_mio::Client::connect(
                weft_mio::ConstantResolver::new(endpoints),
                opts,
            )?),
        };
        Ok(TestClient { inner })
    }

    /// A client of a constant set of TLS endpoints.
    pub fn connect_tls(
        driver: Driver,
        endpoints: Vec<weft_tokio::tls::TlsEndpoint>,
        opts: ClientOptions,
    ) -> Result<TestClient, CallError> {
        let inner = match driver {
            Driver::Tokio => {
                let rt = runtime();
                let resolver = weft_tokio::ConstantResolver::new(endpoints);
                let conn = rt.block_on(weft_tokio::connect(resolver, opts))?;
                ClientImpl::Tokio { rt, conn }
            }
            Driver::Mio => ClientImpl::Mio(weft_mio::Client::connect(
                weft_mio::ConstantResolver::new(endpoints),
                opts,
            )?),
        };
        Ok(TestClient { inner })
    }

    /// A client following `resolver`.
    pub fn connect_dynamic(driver: Driver, resolver: &Dynamic) -> Result<TestClient, CallError> {
        let inner = match driver {
            Driver::Tokio => {
                let rt = runtime();
                let conn = rt.block_on(weft_tokio::connect(
                    resolver.tokio.clone(),
                    Default::default(),
                ))?;
                ClientImpl::Tokio { rt, conn }
            }
            Driver::Mio => ClientImpl::Mio(weft_mio::Client::connect(
                resolver.mio.clone(),
                Default::default(),
            )?),
        };
        Ok(TestClient { inner })
    }

    /// A client following `tokio` (on the tokio driver) or `mio` (on the
    /// mio driver): the same resolver in each driver's flavour.
    pub fn connect_resolver(
        driver: Driver,
        tokio: impl weft_tokio::Resolver,
        mio: impl weft_mio::Resolver,
    ) -> Result<TestClient, CallError> {
        let inner = match driver {
            Driver::Tokio => {
                let rt = runtime();
                let conn = rt.block_on(weft_tokio::connect(tokio, Default::default()))?;
                ClientImpl::Tokio { rt, conn }
            }
            Driver::Mio => ClientImpl::Mio(weft_mio::Client::connect(mio, Default::default())?),
        };
        Ok(TestClient { inner })
    }

    /// Calls `weft.Test.<method>`.
    pub fn call(
        &self,
        method: &str,
        args: impl Into<Bytes>,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        self.call_key(MethodKey::new(COMPONENT, method), args, opts)
    }

    /// Calls the method `key`.
    pub fn call_key(
        &self,
        key: MethodKey,
        args: impl Into<Bytes>,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        match &self.inner {
            ClientImpl::Tokio { rt, conn } => rt.block_on(conn.call(key, args.into(), opts)),
            ClientImpl::Mio(c) => c.call(key, args.into(), opts),
        }
    }

    /// Starts `n` calls of `weft.Test.<method>` at once, without waiting
    /// for them.
    pub fn start_calls(
        &self,
        method: &str,
        args: impl Into<Bytes>,
        n: usize,
        opts: CallOptions,
    ) -> PendingCalls {
        let key = MethodKey::new(COMPONENT, method);
        let args = args.into();
        match &self.inner {
            ClientImpl::Tokio { rt, conn } => PendingCalls::Tokio {
                rt: rt.clone(),
                calls: (0..n)
                    .map(|_| {
                        let (conn, key, args, opts) =
                            (conn.clone(), key, args.clone(), opts.clone());
                        rt.spawn(async move { conn.call(key, args, opts).await })
                    })
                    .collect(),
            },
            ClientImpl::Mio(c) => PendingCalls::Mio(
                (0..n)
                    .map(|_| c.start(key, args.clone(), opts.clone()))
                    .collect(),
            ),
        }
    }

    /// Calls, and abandons the call once `ready` returns: on mio through a
    /// [`CancelHandle`](weft_mio::CancelHandle) from another thread, on
    /// tokio by dropping the call's future, its only way to cancel.
    ///
    /// Nothing here makes up a result: a call that ends before `ready`
    /// returns gives its own result, a mio call the one its cancel produced.
    /// A dropped tokio future has no result at all ([`Abandoned::Dropped`]);
    /// what the drop did is for the caller to observe through the library
    /// (the server's handler is cancelled, the client no longer counts the
    /// call in flight).
    pub fn call_and_cancel_when(
        &self,
        method: &str,
        ready: impl FnOnce() + Send + 'static,
    ) -> Abandoned {
        let key = MethodKey::new(COMPONENT, method);
        match &self.inner {
            ClientImpl::Tokio { rt, conn } => rt.block_on(async {
                let ready = tokio::task::spawn_blocking(ready);
                let mut call = Box::pin(conn.call(key, Bytes::new(), CallOptions::default()));
                tokio::select! {
                    // A call that has ended wins over `ready`.
                    biased;
                    r = &mut call => Abandoned::Ended(r),
                    _ = ready => {
                        // Dropping the pending future is the cancel.
                        drop(call);
                        Abandoned::Dropped
                    }
                }
            }),
            ClientImpl::Mio(c) => {
                let pending = c.start(key, Bytes::new(), CallOptions::default());
                let cancel = pending.cancel_handle();
                let canceller = thread::spawn(move || {
                    ready();
                    cancel.cancel();
                });
                let r = pending.wait();
                canceller.join().expect("canceller");
                Abandoned::Ended(r)
            }
        }
    }

    /// Closes the client.
    pub fn close(&self) {
        match &self.inner {
            ClientImpl::Tokio { conn, .. } => conn.close(),
            ClientImpl::Mio(c) => c.close(),
        }
    }
}

/// Client options whose balancer always picks the first ready replica and
/// records how many calls that replica had in flight at the pick: the
/// client's own count, seen from outside.
pub fn in_flight_probe() -> (ClientOptions, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(usize::MAX));
    let record = seen.clone();
    let balancer = weft_tokio::BalancerFn::new(move |ready: &[_], _: &CallOptions| {
        let first: &weft_tokio::ReadyReplica = ready.first()?;
        record.store(first.in_flight(), Ordering::SeqCst);
        Some(0)
    });
    let opts = ClientOptions {
        balancer: Box::new(balancer),
        ..ClientOptions::default()
    };
    (opts, seen)
}

/// How a call given to [`TestClient::call_and_cancel_when`] ended.
#[derive(Debug)]
pub enum Abandoned {
    /// The library's result for the call: on mio always (after its
    /// cancel), on tokio only if the call ended before it was abandoned.
    Ended(Result<Bytes, CallError>),
    /// The tokio call's future was dropped while the call was pending, so
    /// there is no result to return.
    Dropped,
}

/// Calls started by [`TestClient::start_calls`].
pub enum PendingCalls {
    /// On the tokio client: a task per call.
    Tokio {
        /// The client's runtime.
        rt: Arc<tokio::runtime::Runtime>,
        /// The calls.
        calls: Vec<tokio::task::JoinHandle<Result<Bytes, CallError>>>,
    },
    /// On the mio client.
    Mio(Vec<weft_mio::PendingCall>),
}

impl PendingCalls {
    /// Waits for every call; their results in the order they were started.
    pub fn wait(self) -> Vec<Result<Bytes, CallError>> {
        match self {
            PendingCalls::Tokio { rt, calls } => calls
                .into_iter()
                .map(|c| rt.block_on(c).expect("call task"))
                .collect(),
            PendingCalls::Mio(calls) => calls.into_iter().map(|c| c.wait()).collect(),
        }
    }
}

/// Every combination the suite runs: client driver, server driver,
/// transport.
pub const COMBINATIONS: [(Driver, Driver, Transport); 8] = [
    (Driver::Tokio, Driver::Tokio, Transport::Tcp),
    (Driver::Tokio, Driver::Mio, Transport::Tcp),
    (Driver::Mio, Driver::Tokio, Transport::Tcp),
    (Driver::Mio, Driver::Mio, Transport::Tcp),
    (Driver::Tokio, Driver::Tokio, Transport::Unix),
    (Driver::Tokio, Driver::Mio, Transport::Unix),
    (Driver::Mio, Driver::Tokio, Transport::Unix),
    (Driver::Mio, Driver::Mio, Transport::Unix),
];
