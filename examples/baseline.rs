//! The benchmark's baseline: a bare hyper 1.x server that answers every request with the same
//! bytes and headers as the daemon's `/readyz` and does nothing else. It runs in its fastest
//! configuration (current-thread runtime, HTTP/1 only, no timers), so the ratio daemon/baseline
//! measures what the daemon's own work costs.
//!
//! Usage: `baseline LISTEN_ADDR BODY_FILE`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(body_file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: baseline LISTEN_ADDR BODY_FILE");
    };
    let body = Bytes::from(std::fs::read(&body_file)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("baseline listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let mut response = Response::new(Full::new(body.clone()));
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/health+json"));
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
