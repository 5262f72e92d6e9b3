import Glibc

extension Scan {
    /// One reader thread's share: every `step`-th index from `start`.
    private final class Stripe {
        let body: (Int) -> Void
        let start: Int, step: Int, count: Int
        init(_ body: @escaping (Int) -> Void, start: Int, step: Int, count: Int) {
            self.body = body
            self.start = start
            self.step = step
            self.count = count
        }
        func run() {
            var i = start
            while i < count { body(i); i += step }
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count` on `threads` threads (the caller's among them), striped, and
    /// returns when all are done. Synchronous, so `body` can write straight into an array's storage: the scan reads
    /// each header into its image's slot, where task-group results had to be gathered into lists and copied (twice
    /// the memory of every image at once). Each index is written by one thread only; the joins order the writes
    /// before the caller reads them.
    static func forEachParallel(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        let n = max(1, min(threads, count))
        withoutActuallyEscaping(body) { body in
            var running: [(pthread_t, Unmanaged<Stripe>)] = []
            for c in 1..<max(n, 1) {
                let stripe = Unmanaged.passRetained(Stripe(body, start: c, step: n, count: count))
                var thread = pthread_t()
                let started = pthread_create(&thread, nil, { context in
                    if let context { Unmanaged<Stripe>.fromOpaque(context).takeUnretainedValue().run() }
                    return nil
                }, stripe.toOpaque())
                if started == 0 {
                    running.append((thread, stripe))
                } else {
                    // No thread to be had: this share runs here, after the others were started.
                    stripe.takeUnretainedValue().run()
                    stripe.release()
                }
            }
            Stripe(body, start: 0, step: n, count: count).run()
            for (thread, stripe) in running {
                pthread_join(thread, nil)
                stripe.release()
            }
        }
    }
}
