//! `berth pull`: a progress bar per layer, read from berth's
//! `PullWithProgress`; against a runtime without it (UNIMPLEMENTED), CRI
//! PullImage under a spinner.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use crate::berth_api::v1::pull_progress::Event;
use crate::berth_api::v1::{LayerProgress, LayerState, PullWithProgressRequest, Resolved};
use crate::cri::v1::{AuthConfig, ImageSpec, PullImageRequest};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output;

const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image to pull, e.g. docker.io/library/busybox:latest
    pub image: String,
    /// Registry credentials
    #[arg(long, value_name = "USERNAME:PASSWORD")]
    pub creds: Option<String>,
    /// Registry credentials, base64 of USERNAME:PASSWORD
    #[arg(long, value_name = "AUTH", conflicts_with = "creds")]
    pub auth: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn pull(args: PullArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let image = Some(ImageSpec { image: args.image.clone(), ..Default::default() });
    let auth = auth(&args)?;
    let request = PullWithProgressRequest { image: image.clone(), auth: auth.clone() };
    let id = match cri.call("PullWithProgress", cri.berth().pull_with_progress(request)).await {
        Ok(stream) => follow(&cri, stream).await?,
        Err(ClientError::Rpc { code: tonic::Code::Unimplemented, .. }) => {
            let spinner = ProgressBar::new_spinner().with_message(format!("pulling {}", args.image));
            spinner.enable_steady_tick(TICK);
            let request = PullImageRequest { image, auth, sandbox_config: None };
            let pulled = cri.unbounded("PullImage", cri.images().pull_image(request).await);
            spinner.finish_and_clear();
            pulled?.image_ref
        }
        Err(e) => return Err(e),
    };
    output::emit(&format!("Image is up to date for {id}\n")).await
}

fn auth(args: &PullArgs) -> Result<Option<AuthConfig>, ClientError> {
    if let Some(auth) = &args.auth {
        return Ok(Some(AuthConfig { auth: auth.clone(), ..Default::default() }));
    }
    let Some(creds) = &args.creds else { return Ok(None) };
    let (username, password) = creds
        .split_once(':')
        .ok_or_else(|| ClientError::Usage("--creds takes USERNAME:PASSWORD (or use --auth)".into()))?;
    Ok(Some(AuthConfig { username: username.into(), password: password.into(), ..Default::default() }))
}

/// Shows the events as they come; the image's ID once done.
async fn follow(
    cri: &Cri,
    mut stream: tonic::Streaming<crate::berth_api::v1::PullProgress>,
) -> Result<String, ClientError> {
    let mut bars = Bars::new();
    loop {
        let message =
            stream.message().await.map_err(|status| ClientError::rpc(&cri.endpoint, "PullWithProgress", &status));
        let event = match message {
            Ok(Some(progress)) => progress.event,
            Ok(None) => {
                return Err(ClientError::Rpc {
                    endpoint: cri.endpoint.clone(),
                    rpc: "PullWithProgress",
                    code: tonic::Code::Unknown,
                    message: "the stream ended before the pull did".into(),
                });
            }
            Err(e) => {
                bars.abandon();
                return Err(e);
            }
        };
        match event {
            Some(Event::Resolved(resolved)) => bars.resolved(&resolved),
            Some(Event::Layer(layer)) => bars.layer(&layer).await,
            Some(Event::Done(done)) => {
                bars.abandon();
                return Ok(done.image_ref);
            }
            None => {}
        }
    }
}

/// One bar per layer on a terminal; without one (a log, a pipe) indicatif
/// draws nothing, and each layer's end is a line of its own.
struct Bars {
    multi: MultiProgress,
    layers: HashMap<String, (ProgressBar, LayerState)>,
    terminal: bool,
}

impl Bars {
    fn new() -> Self {
        Bars { multi: MultiProgress::new(), layers: HashMap::new(), terminal: std::io::stderr().is_terminal() }
    }

    fn resolved(&mut self, resolved: &Resolved) {
        self.abandon();
        self.layers.clear();
        for layer in &resolved.layers {
            let bar = self.multi.add(ProgressBar::new(layer.size));
            bar.set_style(style(BAR));
            bar.set_prefix(output::short_id(&layer.digest));
            bar.set_message("waiting");
            self.layers.insert(layer.digest.clone(), (bar, LayerState::Waiting));
        }
    }

    async fn layer(&mut self, layer: &LayerProgress) {
        let Some((bar, shown)) = self.layers.get_mut(&layer.digest) else { return };
        let state = layer.state();
        bar.set_position(layer.downloaded);
        if state == *shown {
            return;
        }
        *shown = state;
        match state {
            LayerState::Waiting => bar.set_message("waiting"),
            LayerState::Downloading => bar.set_message("downloading"),
            LayerState::Unpacking => bar.set_message("unpacking"),
            LayerState::Unpacked | LayerState::AlreadyPresent => {
                let said = if state == LayerState::Unpacked { "unpacked" } else { "already present" };
                bar.set_style(style(FINISHED));
                bar.finish_with_message(said);
                if !self.terminal {
                    let size = indicatif::HumanBytes(bar.length().unwrap_or(0));
                    let line = format!("{} {size} {said}\n", output::short_id(&layer.digest));
                    let _ = tokio::io::stderr().write_all(line.as_bytes()).await;
                }
            }
        }
    }

    /// Leaves the bars drawn as they are.
    fn abandon(&self) {
        for (bar, _) in self.layers.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

const BAR: &str = "{prefix} [{bar:30}] {bytes:>10} / {total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4} {msg}";
const FINISHED: &str = "{prefix} {total_bytes:>10} {msg}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}
