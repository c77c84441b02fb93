//! The audit log's metrics: lines written, lost, sent to the fallback, and
//! calls refused because they could not be audited.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The audit log's counters, shared by the auditor and its writer.
#[derive(Clone, Debug, Default)]
pub(super) struct AuditMetrics {
    written: Counter,
    dropped: Counter,
    fallback: Counter,
    refusals: Counter,
}

impl AuditMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_audit_lines_written",
            "Audit log lines written to the sink",
            self.written.clone(),
        );
        registry.register(
            "gateway_audit_lines_dropped",
            "Audit log lines lost: refusals' lines or lines not required that the queue had \
             no room for, or lines neither the sink nor standard error would take",
            self.dropped.clone(),
        );
        registry.register(
            "gateway_audit_lines_fallback",
            "Audit log lines written to standard error after \"audit-fallback: \", as the sink \
             had failed for --audit-fallback-after or still failed at shutdown",
            self.fallback.clone(),
        );
        registry.register(
            "gateway_audit_refusals",
            "Calls refused UNAVAILABLE (AUDIT_UNAVAILABLE) because they could not be audited",
            self.refusals.clone(),
        );
    }

    /// Lines were written.
    pub(super) fn written(&self, lines: u64) {
        self.written.inc_by(lines);
    }

    /// Lines were lost. A line of a call answered is never lost this way
    /// while the process lives (it waits for the sink, or goes to the
    /// fallback); what is counted here is the lines of calls refused anyway
    /// that a flood left no room for in the queue, a dry run's would-be
    /// refusals when the queue is full, and lines that neither the sink nor
    /// standard error would take.
    pub(super) fn dropped(&self, lines: u64) {
        self.dropped.inc_by(lines);
    }

    /// Lines went to standard error, marked, as the sink failed.
    pub(super) fn fallback(&self, lines: u64) {
        self.fallback.inc_by(lines);
    }

    /// A call was refused because it could not be audited.
    pub(super) fn refused(&self) {
        self.refusals.inc();
    }
}
