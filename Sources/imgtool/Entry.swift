import ArgumentParser
import Dispatch
import ImageOps
import QCow2

import Glibc

/// How `main` runs work and ends the process, kept synchronous on purpose.
///
/// An `async` main that awaits parks the main thread in `dispatch_main()`, which calls `pthread_exit`. In the fully
/// static binary that forced unwind makes libgcc sort every FDE of the 31 MB executable (`_Unwind_Find_FDE` →
/// `search_object` → `frame_heapsort`): ~29 ms of CPU, 166 M of `overlay`'s 188 M instructions (callgrind).
/// So `main` is synchronous; the commands that await run in a detached task while the main thread waits on a
/// semaphore and then calls `exit` itself. The main thread never unwinds and nothing pays for the sort. Nothing in
/// imgtool is `@MainActor`: the main queue is never drained, so code isolated to it would wait forever.
extension Imgtool {
    /// Runs `body`; an error ends the process as `report(_:)` says. Returns when `body` returns.
    static func reporting(_ body: () throws -> Void) {
        do {
            try body()
        } catch {
            report(error)
        }
    }

    /// Runs `body` on the concurrency runtime's threads while the main thread waits, then ends the process with
    /// status 0; an error ends it from the task, as `report(_:)` says. `sending`: the command value moves to the task
    /// and is not touched here again.
    static func awaiting(_ body: sending @escaping () async throws -> Void) -> Never {
        let finished = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await body()
            } catch {
                report(error)
            }
            finished.signal()
        }
        finished.wait()
        exit(0)
    }

    /// Our own errors become `imgtool: error: …` and exit 1 (an interrupted change 128 + the signal, as a shell
    /// reports one); everything else is ArgumentParser's (see `exitForUsage`: usage errors in the contract's form,
    /// exit 64; ExitCode passes through; help exits 0).
    static func report(_ error: any Error) -> Never {
        // (printReportable: the headline and each detail line shown escaped, so no name in them reaches the
        // terminal raw or forges a line.)
        if let error = error as? any ReportableError {
            printReportable(error)
            exit(error.exitCode)
        }
        exitForUsage(error)
    }
}

/// `imgtool: error: …`: the headline and each detail line shown escaped (details indented), so no file name or
/// image text in them reaches the terminal raw or starts a line of its own.
func printReportable(_ error: any ReportableError) {
    printError((["imgtool: error: " + Untrusted.shown(error.headline)] + error.details.map { "  " + Untrusted.shown($0) }).joined(separator: "\n"))
}
