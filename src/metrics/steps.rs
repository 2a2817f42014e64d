//! Where a CRI call's time goes: every span with target [`STEP_TARGET`] (a CNI
//! plugin's ADD, a runtime command, a store commit, a monitor's start) is timed
//! from its creation to its close and observed in
//! `berth_step_duration_seconds{rpc, step}`. Wall time, awaits included: what
//! the caller waited for. The step's label is the span's name, followed by its
//! `what` field when it has one (`cni ADD bridge`, `runtime start`); the RPC's is
//! the method of the enclosing [`RPC_SPAN`] (empty for work outside any call,
//! as recovery at start). A span entered on a blocking thread must be created
//! before the hand-off, in the RPC's context, to count under it.
//!
//! The layer runs whether or not the endpoint is served, as RPC latencies are
//! recorded either way: a step costs an `Instant` and a few atomic adds.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target of the spans that are steps; they are DEBUG spans, so that the
/// log shows them as context only when asked for debug output.
pub const STEP_TARGET: &str = "berth::step";

/// The name of the span, target [`STEP_TARGET`], that wraps one CRI call, its
/// method as `what`: it names the RPC of the steps within and is no step itself.
pub const RPC_SPAN: &str = "rpc";

/// From a namespace pin (tens of microseconds) to a slow plugin or runtime.
const STEP_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

pub(super) type StepLabels = [(&'static str, String); 2];

/// One family for the whole process: the layer is installed with logging,
/// before the daemon (and its [`super::Metrics`]) exists.
pub(super) static STEP_DURATIONS: LazyLock<Family<StepLabels, Histogram>> =
    LazyLock::new(|| Family::new_with_constructor(|| Histogram::new(STEP_BUCKETS.iter().copied())));

/// The layer that times steps, filtered to them alone: it adds no interest in
/// any other span or event.
pub fn step_timer<S>() -> Filtered<StepTimer, Targets, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    StepTimer.with_filter(Targets::new().with_target(STEP_TARGET, Level::DEBUG))
}

pub struct StepTimer;

/// Stored in a step's extensions at its creation.
struct Started {
    at: Instant,
    rpc: String,
    step: String,
}

/// Stored in an RPC span's extensions: its method.
struct Rpc(String);

impl<S> Layer<S> for StepTimer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = attrs.metadata().name();
        if name == RPC_SPAN {
            let mut method = String::new();
            attrs.record(&mut WhatField(&mut method));
            span.extensions_mut().insert(Rpc(method.trim_start().to_string()));
            return;
        }
        let rpc = span.scope().skip(1).find_map(|outer| outer.extensions().get::<Rpc>().map(|rpc| rpc.0.clone()));
        let mut step = name.to_string();
        attrs.record(&mut WhatField(&mut step));
        span.extensions_mut().insert(Started { at: Instant::now(), rpc: rpc.unwrap_or_default(), step });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(started) = extensions.get::<Started>() else { return };
        let seconds = started.at.elapsed().as_secs_f64();
        let labels = [("rpc", started.rpc.clone()), ("step", started.step.clone())];
        STEP_DURATIONS.get_or_create(&labels).observe(seconds);
    }
}

/// Appends the `what` field to the step's name.
struct WhatField<'a>(&'a mut String);

impl Visit for WhatField<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "what" {
            let _ = write!(self.0, " {value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "what" {
            let _ = write!(self.0, " {value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn observed(rpc: &str, step: &str) -> u64 {
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("steps", "", STEP_DURATIONS.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series = format!("steps_count{{rpc=\"{rpc}\",step=\"{step}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(&series)).map_or(0, |n| n.trim().parse().unwrap())
    }

    #[test]
    fn a_step_span_is_counted_under_its_rpc_name_and_what_and_other_spans_are_not() {
        let subscriber = tracing_subscriber::registry().with(step_timer());
        tracing::subscriber::with_default(subscriber, || {
            let rpc = tracing::debug_span!(target: STEP_TARGET, RPC_SPAN, what = %"UnitTestCall");
            rpc.in_scope(|| {
                let handed_off = tracing::debug_span!(target: STEP_TARGET, "unit-test-step", what = "ADD bridge");
                std::thread::spawn(move || handed_off.in_scope(|| {})).join().unwrap();
                tracing::debug_span!(target: STEP_TARGET, "unit-test-step", what = "ADD bridge").in_scope(|| {
                    tracing::info_span!("unit-test-other").in_scope(|| {});
                });
            });
            tracing::debug_span!(target: STEP_TARGET, "unit-test-bare").in_scope(|| {});
        });
        assert_eq!(observed("UnitTestCall", "unit-test-step ADD bridge"), 2);
        assert_eq!(observed("", "unit-test-bare"), 1);
        assert_eq!(observed("UnitTestCall", "unit-test-other"), 0);
        assert_eq!(observed("", "rpc UnitTestCall"), 0);
    }
}
