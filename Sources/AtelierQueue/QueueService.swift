import Foundation

/// Wakes everyone waiting for a queue to change (a put, commit, delete, truncate or release):
/// watchers waiting for work, long-polling `get`s and workers. Waiters re-check the store after
/// every wake-up, so a spurious wake is harmless; each wait also ends after `timeout`.
public final class ChangeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var version: UInt64 = 0
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]

    public init() {}

    public var current: UInt64 { lock.withLock { version } }

    public func notify() {
        let woken = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            version &+= 1
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for c in woken { c.resume() }
    }

    /// Returns once the version differs from `seen`, after `timeout`, or on cancellation.
    public func wait(since seen: UInt64, timeout: Duration) async {
        let id = UUID()
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.wake(id)
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = lock.withLock { () -> Bool in
                    if version != seen || Task.isCancelled { return true }
                    waiters[id] = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            self.wake(id)
        }
    }

    private func wake(_ id: UUID) {
        let c = lock.withLock { waiters.removeValue(forKey: id) }
        c?.resume()
    }
}

/// Limits and policies of one service's queues (the deploy spec's `queue.*`, §7.3, §7.5).
public struct QueueConfiguration: Sendable {
    /// entries per queue before puts get 429 (`stream.maxLength`)
    public var maxLength = 10_000
    /// bytes per entry before puts get 413 (`meta.maxPayloadBytes`)
    public var maxPayloadBytes = 8 << 20
    /// deliveries of an input entry before it dies (0 = unlimited)
    public var maxDelivery = 5
    public init() {}
}

/// One asynchronous service's input queue and sink over a store: the operations of the SDK
/// (put, get, delete, commit, truncate, search, attributes), consumers with windows for
/// watches and workers, and redelivery of what a vanished consumer held.
public final class QueueService: @unchecked Sendable {
    public let name: String
    public let store: any QueueStore
    public let configuration: QueueConfiguration
    public let policy: DeliveryPolicy
    private let signals: [Bool: ChangeSignal] = [false: ChangeSignal(), true: ChangeSignal()]
    private let lock = NSLock()
    /// consumer key (`queue|gid.uid`) → the connection that currently owns it
    private var owners: [String: Consumer] = [:]

    public init(name: String, store: any QueueStore, configuration: QueueConfiguration,
                deadResult: @escaping @Sendable (QueueEntry, String) -> Data) {
        self.name = name
        self.store = store
        self.configuration = configuration
        policy = DeliveryPolicy(maxDelivery: configuration.maxDelivery, deadResult: deadResult)
    }

    public var input: QueueName { .input(name) }
    public var sink: QueueName { .sink(name) }

    func signal(_ q: QueueName) -> ChangeSignal { signals[q.isSink]! }

    /// Start-up: entries that were pending when the process stopped come back (or die under
    /// `max_delivery`); returns the indexes that died.
    @discardableResult
    public func recover() async throws -> [UInt64] {
        let dead = try await store.recover(input, policy: policy)
        _ = try await store.recover(sink, policy: nil)
        return dead
    }

    // MARK: operations of the SDK

    public func put(_ queue: QueueName, data: Data, tags: [String: String], path: String, priority: Int) async throws -> QueueEntry {
        guard data.count <= configuration.maxPayloadBytes else {
            throw QueueError(413, field: "body", "message of \(data.count) bytes is larger than the \(configuration.maxPayloadBytes)-byte limit (meta.maxPayloadBytes); pass images as URLs or use save_dir")
        }
        let e = try await store.put(queue, data: data, tags: tags, path: path, priority: priority, maxLength: configuration.maxLength)
        signal(queue).notify()
        return e
    }

    /// `get`: entries from `from` matching `filter`; waits up to `timeout` when there are none.
    public func get(_ queue: QueueName, from: UInt64, length: Int, timeout: Duration, filter: [String: String], delete: Bool) async throws -> [QueueEntry] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let seen = signal(queue).current
            let found = try await store.get(queue, from: from, length: length, filter: filter, delete: delete)
            if !found.isEmpty {
                if delete { signal(queue).notify() }
                return found
            }
            let left = deadline - ContinuousClock.now
            if left <= .zero || Task.isCancelled { return [] }
            await signal(queue).wait(since: seen, timeout: left)
        }
    }

    /// Commit and delete: the entries are gone (never delivered again), unknown ones ignored.
    public func remove(_ queue: QueueName, indexes: [UInt64]) async throws {
        try await store.delete(queue, indexes: indexes)
        signal(queue).notify()
    }

    public func truncate(_ queue: QueueName, before: UInt64) async throws {
        try await store.truncate(queue, before: before)
        signal(queue).notify()
    }

    public func search(_ queue: QueueName, index: UInt64) async throws -> EntryStatus? {
        try await store.status(queue, index: index)
    }

    /// The `_attrs_` map, all values strings (§5.6).
    public func attributes(_ queue: QueueName, backend: String) async throws -> [String: String] {
        let s = try await store.stats(queue)
        let consumers = lock.withLock { owners.values.filter { $0.queue == queue } }
        var a: [String: String] = [
            "meta.name": queue.description, "meta.backend": backend, "meta.state": "Normal",
            "meta.maxPayloadBytes": String(configuration.maxPayloadBytes),
            "meta.header.user": "X-EAS-QueueService-Redis-Uid", "meta.header.group": "X-EAS-QueueService-Redis-Gid",
            "meta.header.priority": "X-EAS-QueueService-Priority",
            "stream.length": String(s.length), "stream.firstEntry": String(s.firstEntry), "stream.lastEntry": String(s.lastEntry),
            "stream.maxLength": String(configuration.maxLength), "stream.approxMaxLength": String(configuration.maxLength),
            "consumers.status.total": String(consumers.count),
        ]
        if !queue.isSink { a["queue.maxDelivery"] = String(configuration.maxDelivery) }
        for (i, c) in consumers.sorted(by: { $0.id < $1.id }).enumerated() {
            a["consumers.list.[\(i)]"] = "Id: \(c.id), Window: \(c.window), AutoCommit: \(c.autoCommit)"
        }
        return a
    }

    // MARK: consumers

    /// Registers a consumer (a watch connection or a worker). A newer connection of the same
    /// consumer takes over: the older one is told to stop and its pending entries stay with
    /// the consumer, to be sent again on the new connection first (§6.3, §6.4).
    public func connect(_ queue: QueueName, gid: String, uid: String, window: Int, from: UInt64,
                        filter: [String: String], indexOnly: Bool, autoCommit: Bool,
                        onReplaced: @escaping @Sendable () -> Void = {}) -> Consumer {
        let c = Consumer(service: self, queue: queue, id: "\(gid).\(uid)", window: max(window, 1), from: from, filter: filter,
                         indexOnly: indexOnly, autoCommit: autoCommit, onReplaced: onReplaced)
        let old = lock.withLock { () -> Consumer? in
            defer { owners[c.key] = c }
            return owners[c.key]
        }
        old?.replaced()
        if old != nil { signal(queue).notify() }  // the old connection's next() sees it lost ownership
        return c
    }

    /// Whether `c` still owns its consumer identity (no newer connection took over).
    func owns(_ c: Consumer) -> Bool { lock.withLock { owners[c.key] === c } }

    /// A connection ended: if it still owned the consumer, what it held goes back (§6.4).
    func disconnect(_ c: Consumer, reason: String) async {
        let owned = lock.withLock { () -> Bool in
            guard owners[c.key] === c else { return false }
            owners.removeValue(forKey: c.key)
            return true
        }
        guard owned else { return }
        do {
            _ = try await store.release(c.queue, consumer: c.id, index: nil, reason: reason, policy: c.queue.isSink ? nil : policy)
            signal(c.queue).notify()
            signal(sink).notify()
        } catch {
            // the store is gone (shutting down); recover() at the next start gives them back
        }
    }

    /// Negative acknowledgement (`_negative_=true`): the consumer gives entries back; each
    /// counts as a failed delivery.
    public func negative(_ queue: QueueName, consumer: String, indexes: [UInt64]) async throws {
        for i in indexes {
            _ = try await store.release(queue, consumer: consumer, index: i, reason: "given back by its consumer", policy: queue.isSink ? nil : policy)
        }
        signal(queue).notify()
        signal(sink).notify()
    }

    /// A worker's handler failed on an entry it can retry: it goes back (or dies).
    public func giveBack(_ c: Consumer, index: UInt64, reason: String) async throws {
        _ = try await store.release(c.queue, consumer: c.id, index: index, reason: reason, policy: policy)
        signal(c.queue).notify()
        signal(sink).notify()
    }

    /// A worker's result: into the sink under the input's index, input removed, one transaction.
    /// Waits while the sink is full (back-pressure: the worker's window stays full meanwhile).
    public func complete(index: UInt64, result: DataFrame) async throws {
        while try await store.stats(sink).length >= configuration.maxLength && !Task.isCancelled {
            let seen = signal(sink).current
            await signal(sink).wait(since: seen, timeout: .seconds(1))
        }
        try await store.complete(input, index: index, result: result)
        signal(input).notify()
        signal(sink).notify()
    }
}

/// One consumer connection: hands out entries respecting its window — first those it already
/// held (a reconnect), then new claims in delivery order — and gives them back when it ends.
public final class Consumer: @unchecked Sendable {
    unowned let service: QueueService
    public let queue: QueueName
    /// `gid.uid`
    public let id: String
    public let window: Int
    let from: UInt64
    let filter: [String: String]
    public let indexOnly: Bool
    public let autoCommit: Bool
    private let onReplaced: @Sendable () -> Void
    private var resend: [QueueEntry]?
    /// claimed in one transaction, not yet handed out
    private var claimed: [QueueEntry] = []
    private var sent = Set<UInt64>()
    var key: String { "\(queue)|\(id)" }

    init(service: QueueService, queue: QueueName, id: String, window: Int, from: UInt64, filter: [String: String],
         indexOnly: Bool, autoCommit: Bool, onReplaced: @escaping @Sendable () -> Void) {
        self.service = service
        self.queue = queue
        self.id = id
        self.window = window
        self.from = from
        self.filter = filter
        self.indexOnly = indexOnly
        self.autoCommit = autoCommit
        self.onReplaced = onReplaced
    }

    func replaced() { onReplaced() }

    /// The next entry to deliver; waits while the window is full or nothing is waiting.
    /// Returns nil when the task is cancelled or a newer connection took over.
    public func next() async throws -> QueueEntry? {
        let signal = service.signal(queue)
        if resend == nil { resend = try await service.store.pending(queue, consumer: id) }
        while !Task.isCancelled && service.owns(self) {
            if let e = resend?.first {
                resend?.removeFirst()
                if sent.insert(e.index).inserted { return e }
                continue
            }
            if !claimed.isEmpty {
                let e = claimed.removeFirst()
                sent.insert(e.index)
                return e
            }
            let seen = signal.current
            // up to the free part of the window at once (auto-commit: a small batch)
            claimed = try await service.store.claim(queue, consumer: id, window: window, from: from, filter: filter,
                                                    autoCommit: autoCommit, limit: autoCommit ? 16 : window)
            if !claimed.isEmpty {
                if autoCommit { service.signal(queue).notify() }
                continue
            }
            await signal.wait(since: seen, timeout: .seconds(2))
        }
        return nil
    }

    /// The connection ended (EOF, reset, shutdown): pending entries go back unless a newer
    /// connection of the same consumer owns them now.
    public func close(reason: String) async {
        await service.disconnect(self, reason: reason)
    }
}
