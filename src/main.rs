//! The binary: read the configuration, start the node, stop it cleanly on Ctrl-C or SIGTERM.

use clap::Parser as _;
use douyin_club::config::Command;
use douyin_club::{Config, Node};

// Request handling allocates many small, short-lived objects on several threads at once;
// mimalloc's per-thread heaps keep that off glibc malloc's contended arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (its `mimalloc.h`, `enum mi_option_e`); the Rust
/// bindings name only older options. A test below checks the number against the default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc give freed memory back to the system at once. By default it waits a second
/// and then purges only when the same thread allocates again, so the memory of an upload freed
/// on a blocking thread that then sits idle (or exits) stayed resident: idle RSS went from
/// 17 MiB to 35 MiB after three 100 MB uploads, and stayed there.
fn purge_freed_memory_at_once() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table, which mimalloc
    // reads atomically; it has no other effect and no memory-safety precondition.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// How much less CPU priority a `--role scheduler` process takes than the nodes serving
/// requests (a nice value), where `SCHED_IDLE` is refused.
const SCHEDULER_NICENESS: i32 = 19;

/// A scheduler node's work — removing files and rows of deleted videos — is background work:
/// it runs under `SCHED_IDLE`, so that on a shared machine it takes only the CPU the request
/// nodes leave and any of their threads that wakes takes the CPU back at once. While 10,000
/// deletions drained (`bench/scheduler.sh`, two cores shared with wrk and the api) the api's
/// p99 went 0.64–0.71 → 1.68–1.81 ms, against → 2.35–2.41 ms at nice 19 and → 2.44 ms at the
/// same priority, and its throughput fell 5–8 % instead of 12–17 %; the drain took 5.2–6.0 s
/// instead of 2.4 (≤ 10 s asked). Where the policy is refused, nice 19. Threads inherit both;
/// none are started yet.
fn yield_to_requests() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid `sched_param`
    // that lives for the call; it changes only how the kernel schedules us.
    #[allow(unsafe_code)]
    let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
    let nice = rustix::process::getpriority_process(None).unwrap_or(0) + SCHEDULER_NICENESS;
    if let Err(e) = rustix::process::setpriority_process(None, nice)
        && !idle
    {
        eprintln!("cannot lower the scheduler's priority: {e}");
    }
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    purge_freed_memory_at_once();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut config = Config::parse();
    if config.role == douyin_club::config::Role::Scheduler {
        yield_to_requests();
    }
    if let Some(Command::MoveToObjectStore(args)) = config.command.take() {
        return move_to_object_store(config, args).await;
    }
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

/// The `move-to-object-store` command: success only when every video was moved.
async fn move_to_object_store(
    config: Config,
    args: douyin_club::config::MoveArgs,
) -> std::process::ExitCode {
    match douyin_club::relocate::move_to_object_store(config, args).await {
        Ok(report) => {
            log::info!(
                "moved {} videos ({} bytes), removed {} local files, aborted {} cut-off copies, \
                 left {}",
                report.moved,
                report.bytes,
                report.removed,
                report.aborted,
                report.skipped.len()
            );
            if report.skipped.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                log::error!("{} videos stay on files; run the move again", report.skipped.len());
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            log::error!("the move stopped: {e}; run it again to go on");
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

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_we_mean() {
        // SAFETY: reads one integer from mimalloc's option table.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc v3's documented default for purge_delay, unless the environment set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(delay, 1000, "option {MI_OPTION_PURGE_DELAY} is not purge_delay");
        }
    }
}
