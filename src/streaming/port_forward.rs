//! One forwarded connection: bytes both ways between the client's data stream
//! and a TCP connection berth made inside the pod.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Once one direction has ended, how long the other may go on (containerd's
/// figure): a half-closed peer that never closes must not hold the task.
const OTHER_DIRECTION_GRACE: Duration = Duration::from_secs(1);

/// Relays until both directions end, each side's end passed on as a half-close.
pub async fn relay<S>(connection: TcpStream, client: S)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut from_pod, mut to_pod) = connection.into_split();
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_pod).await;
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_pod, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut upstream => {
            let _ = tokio::time::timeout(OTHER_DIRECTION_GRACE, downstream).await;
        }
        () = &mut downstream => {
            let _ = tokio::time::timeout(OTHER_DIRECTION_GRACE, upstream).await;
        }
    }
}
