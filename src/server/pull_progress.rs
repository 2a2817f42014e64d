//! `berth.v1.Images/PullWithProgress`: a pull's progress as a stream of
//! events, translated from the image service's published view.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::image_service::{credentials, image_name};
use super::status_code::to_status;
use crate::berth_api::v1 as api;
use crate::berth_api::v1::images_server::Images;
use crate::berth_api::v1::pull_progress::Event;
use crate::daemon::Daemon;
use crate::images::pull_progress::{LayerPhase, LayerView, PullView};

/// Events queued for a slow client; the view is a snapshot, so a client that
/// lags only sees fewer, later ones.
const EVENTS_BUFFERED: usize = 32;

pub struct ProgressApi {
    daemon: Arc<Daemon>,
}

impl ProgressApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ProgressApi { daemon }
    }
}

#[tonic::async_trait]
impl Images for ProgressApi {
    type PullWithProgressStream = ReceiverStream<Result<api::PullProgress, Status>>;

    async fn pull_with_progress(
        &self,
        request: Request<api::PullWithProgressRequest>,
    ) -> Result<Response<Self::PullWithProgressStream>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let credentials = credentials(request.auth.as_ref())?;
        let (progress, pulled) = self.daemon.images().pull_with_progress(name, &credentials).map_err(to_status)?;
        let (tx, rx) = mpsc::channel(EVENTS_BUFFERED);
        tokio::spawn(relay(progress, pulled, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends each change of the view until the pull ends, then its outcome. The
/// client going away drops the pull future: it leaves the flight, as a
/// dropped PullImage does.
async fn relay(
    mut progress: watch::Receiver<PullView>,
    pulled: impl Future<Output = Result<crate::images::catalog::ImageRecord, crate::images::ImageError>>,
    tx: mpsc::Sender<Result<api::PullProgress, Status>>,
) {
    tokio::pin!(pulled);
    let mut shown = PullView::default();
    let mut watching = true;
    loop {
        tokio::select! {
            outcome = &mut pulled => {
                let last = progress.borrow().clone();
                let mut events: Vec<Result<api::PullProgress, Status>> =
                    changes(&shown, &last).into_iter().map(Ok).collect();
                events.push(match outcome {
                    Ok(image) => Ok(event(Event::Done(api::Done { image_ref: image.id }))),
                    Err(e) => Err(to_status(e)),
                });
                for event in events {
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                return;
            }
            changed = progress.changed(), if watching => {
                if changed.is_err() {
                    // The tracker is gone: only the outcome is left to tell.
                    watching = false;
                    continue;
                }
                let view = progress.borrow_and_update().clone();
                for event in changes(&shown, &view) {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                shown = view;
            }
            () = tx.closed() => return,
        }
    }
}

fn event(event: Event) -> api::PullProgress {
    api::PullProgress { event: Some(event) }
}

/// The events that take a client from `before` to `after`: the layer list
/// when it is new (with every layer's state), else each layer that moved.
pub(super) fn changes(before: &PullView, after: &PullView) -> Vec<api::PullProgress> {
    let Some(layers) = &after.layers else { return Vec::new() };
    let same_layers = before
        .layers
        .as_ref()
        .is_some_and(|old| old.len() == layers.len() && old.iter().zip(layers).all(|(a, b)| a.digest == b.digest));
    if !same_layers {
        let announced = api::Resolved {
            layers: layers.iter().map(|l| api::Layer { digest: l.digest.clone(), size: l.size }).collect(),
        };
        return std::iter::once(event(Event::Resolved(announced))).chain(layers.iter().map(layer_event)).collect();
    }
    let old = before.layers.iter().flatten();
    old.zip(layers).filter(|(a, b)| a != b).map(|(_, layer)| layer_event(layer)).collect()
}

fn layer_event(layer: &LayerView) -> api::PullProgress {
    let state = match layer.phase {
        LayerPhase::Waiting => api::LayerState::Waiting,
        LayerPhase::Downloading => api::LayerState::Downloading,
        LayerPhase::Unpacking => api::LayerState::Unpacking,
        LayerPhase::Unpacked => api::LayerState::Unpacked,
        LayerPhase::Present => api::LayerState::AlreadyPresent,
    };
    event(Event::Layer(api::LayerProgress {
        digest: layer.digest.clone(),
        state: state as i32,
        downloaded: layer.downloaded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(layers: &[(&str, u64, LayerPhase)]) -> PullView {
        let layers = layers
            .iter()
            .map(|(digest, downloaded, phase)| LayerView {
                digest: digest.to_string(),
                size: 100,
                downloaded: *downloaded,
                phase: *phase,
            })
            .collect();
        PullView { layers: Some(layers) }
    }

    #[test]
    fn a_new_layer_list_is_announced_then_only_moves_are_sent() {
        assert!(changes(&PullView::default(), &PullView::default()).is_empty(), "nothing known yet");
        let first = view(&[("a", 0, LayerPhase::Waiting), ("b", 0, LayerPhase::Present)]);
        let events = changes(&PullView::default(), &first);
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0].event, Some(Event::Resolved(r)) if r.layers.len() == 2 && r.layers[0].size == 100));

        let moved = view(&[("a", 40, LayerPhase::Downloading), ("b", 0, LayerPhase::Present)]);
        let events = changes(&first, &moved);
        assert_eq!(events.len(), 1);
        let Some(Event::Layer(layer)) = &events[0].event else { panic!("{events:?}") };
        assert_eq!((layer.digest.as_str(), layer.downloaded, layer.state()), ("a", 40, api::LayerState::Downloading));

        let other_endpoint = view(&[("c", 0, LayerPhase::Waiting)]);
        assert!(matches!(changes(&moved, &other_endpoint)[0].event, Some(Event::Resolved(_))));
    }
}
