import Foundation

/// A service's instances as the gateway sees them: which are healthy, how many jobs each runs
/// (at most `rpc.worker_threads`), and who waits for one. Job requests wait in arrival order
/// for a free instance; an instance being replaced (`draining`) takes no new job.
actor InstancePool {
    struct Slot: Sendable {
        var id: String
        var port: Int
        var pid: Int32
        var healthy: Bool
        var draining = false
        var busy = 0
        var capacity: Int
        /// task ids (`force_task_id`, `id_task`) of the jobs it runs, for progress/interrupt/skip
        var tasks: [String] = []
        var lastJob: Date?
        var jobsServed = 0
    }

    struct Lease: Sendable {
        let id: String
        let port: Int
        let task: String?
    }

    struct NoInstance: Error, CustomStringConvertible {
        let description: String
    }

    private(set) var slots: [String: Slot] = [:]
    private var order: [String] = []
    private var waiters: [(key: UUID, task: String?, continuation: CheckedContinuation<Lease, Error>)] = []
    private var roundRobin = 0

    func upsert(id: String, port: Int, pid: Int32, capacity: Int, healthy: Bool) {
        if var s = slots[id] {
            s.port = port
            s.pid = pid
            s.healthy = healthy
            slots[id] = s
        } else {
            slots[id] = Slot(id: id, port: port, pid: pid, healthy: healthy, capacity: capacity)
            order.append(id)
        }
        dispatch()
    }

    func setHealthy(_ id: String, _ healthy: Bool) {
        guard slots[id] != nil else { return }
        slots[id]!.healthy = healthy
        if healthy { dispatch() }
    }

    func drain(_ id: String) { slots[id]?.draining = true }

    func remove(_ id: String) {
        slots.removeValue(forKey: id)
        order.removeAll { $0 == id }
    }

    func busy(_ id: String) -> Int { slots[id]?.busy ?? 0 }

    /// Waits (FIFO) for an instance with a free job slot.
    func acquire(task: String?, timeout: Duration) async throws -> Lease {
        if waiters.isEmpty, let lease = take(task: task) { return lease }
        let key = UUID()
        return try await withCheckedThrowingContinuation { continuation in
            waiters.append((key, task, continuation))
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expire(key, after: timeout)
            }
        }
    }

    private func expire(_ key: UUID, after: Duration) {
        guard let i = waiters.firstIndex(where: { $0.key == key }) else { return }
        let w = waiters.remove(at: i)
        w.continuation.resume(throwing: NoInstance(description: "no instance became free within \(after)"))
    }

    func release(_ lease: Lease) {
        if var s = slots[lease.id] {
            s.busy = max(s.busy - 1, 0)
            if let t = lease.task, let i = s.tasks.firstIndex(of: t) { s.tasks.remove(at: i) }
            slots[lease.id] = s
        }
        dispatch()
    }

    /// Fails every waiter (the service is being stopped or deleted).
    func failWaiters(_ message: String) {
        let w = waiters
        waiters.removeAll()
        for x in w { x.continuation.resume(throwing: NoInstance(description: message)) }
    }

    private func take(task: String?) -> Lease? {
        // the least busy healthy instance, earliest in order
        guard let id = order.filter({ slots[$0].map { $0.healthy && !$0.draining && $0.busy < $0.capacity } ?? false })
            .min(by: { slots[$0]!.busy < slots[$1]!.busy }) else { return nil }
        slots[id]!.busy += 1
        slots[id]!.lastJob = Date()
        slots[id]!.jobsServed += 1
        if let task { slots[id]!.tasks.append(task) }
        return Lease(id: id, port: slots[id]!.port, task: task)
    }

    private func dispatch() {
        while !waiters.isEmpty, let lease = take(task: waiters[0].task) {
            waiters.removeFirst().continuation.resume(returning: lease)
        }
    }

    /// Any healthy instance, in turn (requests that are not jobs).
    func any() -> (id: String, port: Int)? {
        let healthy = order.filter { slots[$0]?.healthy == true && slots[$0]?.draining == false }
            + order.filter { slots[$0]?.healthy == true && slots[$0]?.draining == true }
        guard !healthy.isEmpty else { return nil }
        roundRobin += 1
        let id = healthy[roundRobin % healthy.count]
        return (id, slots[id]!.port)
    }

    func allHealthy() -> [(id: String, port: Int)] {
        order.compactMap { id in slots[id].flatMap { $0.healthy ? (id, $0.port) : nil } }
    }

    /// The instance running a job: the one with this task id, else the one that started a job last.
    func running(task: String?) -> (id: String, port: Int)? {
        if let task, let s = slots.values.first(where: { $0.tasks.contains(task) }) { return (s.id, s.port) }
        if let s = slots.values.filter({ $0.busy > 0 }).max(by: { ($0.lastJob ?? .distantPast) < ($1.lastJob ?? .distantPast) }) {
            return (s.id, s.port)
        }
        return nil
    }

    var waiting: Int { waiters.count }
    func snapshot() -> [Slot] { order.compactMap { slots[$0] } }
}
