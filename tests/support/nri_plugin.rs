//! An NRI plugin for the tests, speaking NRI over berth's socket with berth's
//! own protocol code (`berth::nri::peer`) playing the plugin's side: it
//! registers, subscribes to every event, records what it is sent, and answers
//! as its `Behaviour` says.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::nri::api;
use berth::nri::peer::{self, Handler, Peer};
use berth::nri::ttrpc;
use prost::Message;
use tokio::sync::mpsc;

/// What the plugin was sent, in order: the method, and the ids it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub pod: String,
    pub container: String,
}

/// How the plugin answers one method; every other is accepted.
#[derive(Clone)]
pub enum Behaviour {
    Accept,
    /// Answers the method with an error.
    Refuse(&'static str),
    /// Never answers the method.
    Hang(&'static str),
    /// Answers CreateContainer with this adjustment.
    Adjust(Box<api::ContainerAdjustment>),
}

pub struct TestPlugin {
    /// Dropping it is the plugin's crash: its connection closes.
    peer: Option<Peer>,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// What Synchronize was sent.
    pub synchronized: Arc<Mutex<Option<api::SynchronizeRequest>>>,
}

const WAIT: Duration = Duration::from_secs(30);

impl TestPlugin {
    /// Connects to berth's NRI socket and registers as `<index>-<name>`;
    /// returns once berth has synchronised it.
    pub async fn connect(socket: &Path, name: &str, index: &str, behaviour: Behaviour) -> TestPlugin {
        let deadline = tokio::time::Instant::now() + WAIT;
        let stream = loop {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(stream) => break stream,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("NRI socket {}: {e}", socket.display()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let synchronized = Arc::new(Mutex::new(None));
        let (synced_tx, mut synced) = mpsc::unbounded_channel();
        let handler = handler(behaviour, seen_tx, synchronized.clone(), synced_tx);
        let peer = Peer::start(stream, peer::PLUGIN, handler);
        let register = api::RegisterPluginRequest {
            plugin_name: name.into(),
            plugin_idx: index.into(),
            nri_version: "v0.12.2".into(),
        };
        let _: api::Empty =
            peer.call("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin", &register, WAIT).await.expect("RegisterPlugin");
        tokio::time::timeout(WAIT, synced.recv()).await.expect("berth synchronises the plugin");
        TestPlugin { peer: Some(peer), seen, synchronized }
    }

    /// The next event berth sent, waiting for it.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv()).await.expect("an NRI event").expect("the plugin's channel")
    }

    /// Events sent so far, without waiting.
    pub fn drain(&mut self) -> Vec<Seen> {
        let mut all = Vec::new();
        while let Ok(seen) = self.seen.try_recv() {
            all.push(seen);
        }
        all
    }

    /// Asks berth to update and evict containers (the Runtime service).
    pub async fn update_containers(&self, request: api::UpdateContainersRequest) -> api::UpdateContainersResponse {
        let peer = self.peer.as_ref().expect("a connected plugin");
        peer.call("nri.pkg.api.v1alpha1.Runtime", "UpdateContainers", &request, WAIT).await.expect("UpdateContainers")
    }

    /// The plugin's process dies: its connection closes.
    pub fn crash(&mut self) {
        self.peer.take();
    }
}

fn handler(
    behaviour: Behaviour,
    seen: mpsc::UnboundedSender<Seen>,
    synchronized: Arc<Mutex<Option<api::SynchronizeRequest>>>,
    synced: mpsc::UnboundedSender<()>,
) -> Handler {
    Arc::new(move |request: ttrpc::Request| {
        let (behaviour, seen, synchronized, synced) =
            (behaviour.clone(), seen.clone(), synchronized.clone(), synced.clone());
        Box::pin(async move {
            let method = request.method.clone();
            match method.as_str() {
                // Every event (0: NRI's "all").
                "Configure" => return Ok(api::ConfigureResponse { events: 0 }.encode_to_vec()),
                "Synchronize" => {
                    let sync = api::SynchronizeRequest::decode(request.payload.as_slice()).expect("SynchronizeRequest");
                    *synchronized.lock().unwrap() = Some(sync);
                    let _ = synced.send(());
                    return Ok(api::SynchronizeResponse::default().encode_to_vec());
                }
                _ => {}
            }
            // Every event's request starts with the pod (1) and the container (2).
            let ids = api::CreateContainerRequest::decode(request.payload.as_slice()).unwrap_or_default();
            let _ = seen.send(Seen {
                method: method.clone(),
                pod: ids.pod.map(|p| p.id).unwrap_or_default(),
                container: ids.container.map(|c| c.id).unwrap_or_default(),
            });
            match behaviour {
                Behaviour::Refuse(refused) if refused == method => Err(ttrpc::Status {
                    code: ttrpc::code::UNKNOWN,
                    message: format!("the test plugin refuses {method}"),
                }),
                Behaviour::Hang(hung) if hung == method => {
                    std::future::pending::<()>().await;
                    Ok(Vec::new())
                }
                Behaviour::Adjust(adjust) if method == "CreateContainer" => {
                    Ok(api::CreateContainerResponse { adjust: Some(*adjust), ..Default::default() }.encode_to_vec())
                }
                // Every other answer is an empty message.
                _ => Ok(Vec::new()),
            }
        })
    })
}
