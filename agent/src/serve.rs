//! The agent service: waits for the host on the agent channel and serves its requests.

use crate::channel;
use den_agent_proto::msg::{Control, ErrorReply, Request};
use den_agent_proto::mux::{Incoming, Role, Session};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Software string in the agent's hello.
pub(crate) const SOFTWARE: &str = concat!("den-agent ", env!("CARGO_PKG_VERSION"));

/// Serves the host on every channel available, forever.
pub(crate) async fn serve(vsock_port: u32) {
    match channel::listen_vsock(vsock_port) {
        Ok(listener) => {
            tokio::spawn(async move {
                loop {
                    match channel::accept_vsock(&listener).await {
                        Ok(conn) => {
                            tokio::spawn(run_session(conn));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "vsock accept failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
        }
        Err(e) => tracing::debug!(error = %e, "no vsock listener"),
    }
    serve_port().await
}

/// Serves the virtio-serial port: one host session at a time, waiting while nobody is connected.
async fn serve_port() {
    let mut announced = false;
    loop {
        let Some(path) = channel::find_port() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if !announced {
            tracing::info!(port = %path.display(), "agent channel found");
            announced = true;
        }
        match channel::open_port(&path) {
            Ok(Some(io)) => run_session(io).await,
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                tracing::debug!(error = %e, "agent port busy");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs one session until the host goes away.
pub(crate) async fn run_session<T: AsyncRead + AsyncWrite + Send + 'static>(io: T) {
    let (_session, mut incoming) = Session::start(io, Role::Agent, SOFTWARE);
    while let Some(inc) = incoming.recv().await {
        tokio::spawn(handle(inc));
    }
}

async fn handle(inc: Incoming) {
    let Incoming { request, stream } = inc;
    let id = stream.id();
    tracing::debug!(stream = id, ?request, "request");
    let res = match request {
        Request::Exec(req) => crate::exec::run(req, stream).await,
        Request::Forward { target } => crate::ops::forward(target, stream).await,
        Request::PutFile { path, mode } => crate::ops::put_file(&path, mode, stream).await,
        Request::GetFile { path } => crate::ops::get_file(&path, stream).await,
        one_shot => {
            let reply = crate::ops::one_shot(one_shot).await;
            let msg = match reply {
                Ok(value) => Control::Result { value },
                Err(e) => Control::Error(e),
            };
            let _ = stream.tx.control(&msg);
            stream.tx.close(None);
            Ok(())
        }
    };
    if let Err((e, tx)) = res {
        let _ = tx.control(&Control::Error(e.clone()));
        tx.close(Some(e));
    }
}

/// A failed request: the reply and the stream's sender to deliver it on.
pub(crate) type Failed = (ErrorReply, den_agent_proto::mux::StreamSender);
