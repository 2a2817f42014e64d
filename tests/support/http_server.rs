//! A small HTTP/1 server on 127.0.0.1 for test doubles (the token server, the
//! registry proxy).
//!
//! It runs on a thread of its own with its own tokio runtime, not on the
//! test's: a test may block its thread (a synchronous `berth` CLI call,
//! `std::process::Command::output`) while berth waits for an answer, which
//! would deadlock a server sharing the test's current-thread runtime.
//!
//! ```ignore
//! let bound = BackgroundServer::bind("echo");
//! let me = format!("http://{}/", bound.addr()); // for a handler that must know its own URL
//! let server = bound.serve(move |_request| std::future::ready(Response::new(Full::from(me.clone()))));
//! drop(server); // the port is closed when drop returns
//! ```
#![allow(dead_code)]

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// A server answering every request with a handler, until dropped. Drop stops
/// the runtime (cancelling open connections and every task spawned on it,
/// stalled bodies included) and joins the thread, so the port is closed when
/// drop returns.
pub struct BackgroundServer {
    addr: SocketAddr,
    /// Set by the server thread as it ends: a test's proof that drop stopped
    /// it (a port number is no proof: a parallel test may bind it again).
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Dropping it ends the serving loop.
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds 127.0.0.1:0; [`BoundListener::serve`] then starts serving, so a
    /// handler may be built knowing the address. `name` ("token-server") names
    /// the thread and prefixes the server's complaints.
    pub fn bind(name: &str) -> BoundListener {
        // Binding port 0 here (not probing a free port for someone else to
        // bind later) leaves no window for another test to take the port.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding {name} to 127.0.0.1:0: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("reading {name}'s address: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("making {name}'s listener non-blocking: {e}"));
        BoundListener { name: name.to_owned(), listener, addr, tls: None }
    }

    /// 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// True once the server thread has ended.
    pub fn stopped_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.stopped)
    }
}

/// A listening socket that [`BoundListener::serve`] turns into a [`BackgroundServer`].
pub struct BoundListener {
    name: String,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl BoundListener {
    /// 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Speaks HTTPS with this PEM certificate (chain) and key.
    pub fn tls(mut self, cert_pem: &[u8], key_pem: &[u8]) -> BoundListener {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        crate::support::registry::install_crypto_provider();
        let certs: Vec<CertificateDer> =
            CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().expect("parsing the certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("parsing the key PEM");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a TLS server configuration");
        self.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        self
    }

    /// Serves HTTP/1 with `handler` on a thread of its own until the server is dropped.
    pub fn serve<H, F, B>(self, handler: H) -> BackgroundServer
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let BoundListener { name, listener, addr, tls } = self;
        let handler = Arc::new(handler);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopped_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stopped = Arc::clone(&stopped_flag);
        let thread_name = format!("{name}-{}", addr.port());
        let thread = thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("building {name}'s runtime: {e}"));
                runtime.block_on(async {
                    let listener = TcpListener::from_std(listener)
                        .unwrap_or_else(|e| panic!("registering {name}'s listener: {e}"));
                    tokio::select! {
                        () = serve(listener, tls, handler, &name) => {}
                        // Ok (a send) or Err (the sender dropped): stop either way.
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels the connection tasks still open.
                drop(runtime);
                thread_stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap_or_else(|e| panic!("starting thread {thread_name}: {e}"));
        BackgroundServer { addr, stopped: stopped_flag, shutdown: Some(shutdown), thread: Some(thread) }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        drop(self.shutdown.take());
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was already printed; do not panic
            // again in drop (possibly during a test's own unwinding).
            let _ = thread.join();
        }
    }
}

async fn serve<H, F, B>(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, handler: Arc<H>, name: &str)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Accept errors (EMFILE under load, a connection reset before
                // accept) are transient: keep serving.
                eprintln!("{name}: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        let tls = tls.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| handler(request).map(Ok::<_, Infallible>));
            // An error here is a client hanging up (possibly mid-body, which
            // is how a cancelled download looks), or one refusing the
            // certificate: nothing to report.
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow with every request.
        while connections.try_join_next().is_some() {}
    }
}
