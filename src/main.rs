//! The binary: read the configuration, start the node, stop it cleanly on Ctrl-C or SIGTERM.

use clap::Parser as _;
use douyin_club::{Config, Node};

// Request handling allocates many small, short-lived objects on several threads at once;
// mimalloc's per-thread heaps keep that off glibc malloc's contended arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    let mut node = match Node::start(config).await {
        Ok(node) => node,
        Err(e) => {
            log::error!("cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = node_stopper(&node);
    actix_web::rt::spawn(stop);
    match node.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, then stops every service gracefully.
fn node_stopper(node: &Node) -> impl std::future::Future<Output = ()> + 'static {
    let handles = node.stop_handle();
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        handles.stop(true).await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        log::info!("shutting down");
        handles.stop(true).await;
    }
}
