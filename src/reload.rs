//! Config reload: on SIGHUP and whenever the config file changes, load, validate and compile a
//! new snapshot off the request path and swap it in whole. An invalid config is logged, counted
//! (`ferrogate_config_reloads_total{result="failed"}`) and ignored; the old snapshot keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::AppState;

/// Reloads from `state.config_path` now; returns whether the new config was applied.
pub fn reload_now(state: &AppState) -> bool {
    let Some(path) = &state.config_path else {
        return false;
    };
    let result = crate::config::load_file(path)
        .map_err(|e| e.to_string())
        .and_then(|config| state.apply(&config).map_err(|e| e.to_string()));
    match result {
        Ok(()) => {
            state.metrics.reloads_ok.increment(1);
            tracing::info!(path = %path.display(), "configuration reloaded");
            true
        }
        Err(problems) => {
            state.metrics.reloads_failed.increment(1);
            tracing::error!(path = %path.display(), "configuration rejected, keeping the previous one:\n{problems}");
            false
        }
    }
}

/// Starts the SIGHUP listener and the file watcher (when there is a config file).
pub fn spawn(state: Arc<AppState>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    // Always handle SIGHUP: its default action would terminate the process without a drain.
    spawn_sighup(tx.clone());
    let Some(path) = state.config_path.clone() else {
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tracing::info!("SIGHUP: running without a config file, nothing to reload");
            }
        });
        return;
    };
    // Keep the watcher alive inside the task that consumes its events.
    let watcher = watch_file(&path, tx);
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Editors write files in several steps; let them finish, then coalesce the burst.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let state = Arc::clone(&state);
            let _ = tokio::task::spawn_blocking(move || reload_now(&state)).await;
        }
    });
}

#[cfg(unix)]
fn spawn_sighup(tx: mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = tx.try_send(());
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP"),
    }
}

#[cfg(not(unix))]
fn spawn_sighup(_tx: mpsc::Sender<()>) {}

/// Watches the file's directory (editors often replace the file rather than write it in place).
fn watch_file(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let file: PathBuf = path.file_name().map(PathBuf::from)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            let relevant = event.kind.is_modify() || event.kind.is_create();
            if relevant
                && event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(file.as_os_str()))
            {
                let _ = tx.try_send(());
            }
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads");
            None
        }
    }
}
