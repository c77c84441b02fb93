//! Waiting for the signal to stop.

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    // Installing a handler fails only when signals cannot be used at all;
    // then the only way to stop is being killed, which is no worse.
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        Some(()) = async { term.as_mut()?.recv().await } => tracing::info!("SIGTERM received"),
        Some(()) = async { int.as_mut()?.recv().await } => tracing::info!("SIGINT received"),
        else => std::future::pending::<()>().await,
    }
}
