import Foundation

/// One entry of a queue as the SDK sees it (a "data frame"): index, tags, data, message.
public struct DataFrame: Sendable, Equatable {
    public var index: UInt64
    public var tags: [String: String]
    public var data: Data
    public var message: String

    public init(index: UInt64, tags: [String: String], data: Data, message: String = "") {
        self.index = index
        self.tags = tags
        self.data = data
        self.message = message
    }
}

/// A stored entry: the frame plus what the queue needs to deliver it.
public struct QueueEntry: Sendable, Equatable {
    public var frame: DataFrame
    /// the request path a worker calls (`/sdapi/v1/txt2img`); empty on the sink
    public var path: String
    public var priority: Int
    /// times sent to a consumer (first delivery = 1)
    public var deliveries: Int
    /// `gid.uid` of the consumer holding it, nil while waiting
    public var consumer: String?

    public var index: UInt64 { frame.index }
}

/// The two queues of a service: its input queue (`NAME`) and its sink (`NAME/sink`).
public struct QueueName: Hashable, Sendable, CustomStringConvertible {
    public let service: String
    public let isSink: Bool

    public init(service: String, isSink: Bool) {
        self.service = service
        self.isSink = isSink
    }

    public static func input(_ service: String) -> QueueName { .init(service: service, isSink: false) }
    public static func sink(_ service: String) -> QueueName { .init(service: service, isSink: true) }

    /// The name stored and shown in `meta.name`.
    public var description: String { isSink ? service + "/sink" : service }
    public var sink: QueueName { .sink(service) }
}

/// What `search` reports for one index (eas-queue-protocol.md §5.5).
public enum EntryStatus: Sendable, Equatable {
    case waiting(position: Int)
    case pending(consumer: String)
}

/// `stream.*` attributes of a queue.
public struct QueueStats: Sendable, Equatable {
    public var length: Int
    public var firstEntry: UInt64
    /// largest index ever issued to this queue (kept after deletion)
    public var lastEntry: UInt64

    public init(length: Int, firstEntry: UInt64, lastEntry: UInt64) {
        self.length = length
        self.firstEntry = firstEntry
        self.lastEntry = lastEntry
    }
}

/// A client mistake or refusal in the queue protocol: an HTTP status, the parameter or header
/// at fault, and a sentence (rendered as `{"code", "field", "message"}`).
public struct QueueError: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let field: String
    public let message: String

    public init(_ status: Int, field: String, _ message: String) {
        self.status = status
        self.field = field
        self.message = message
    }

    public var description: String { "\(status) \(field): \(message)" }
}

/// What happens to an input entry that comes back from a consumer (consumer gone, worker
/// failure, restart): waiting again, or — once it has been delivered `maxDelivery` times —
/// dead, with an error result written to the sink under its index and tags (§7.3).
public struct DeliveryPolicy: Sendable {
    /// 0 = unlimited
    public var maxDelivery: Int
    /// the sink body that tells a client its request died
    public var deadResult: @Sendable (QueueEntry, String) -> Data

    public init(maxDelivery: Int, deadResult: @escaping @Sendable (QueueEntry, String) -> Data) {
        self.maxDelivery = maxDelivery
        self.deadResult = deadResult
    }

    func isDead(_ e: QueueEntry) -> Bool { maxDelivery > 0 && e.deliveries >= maxDelivery }

    /// The sink frame of a dead input entry: same index, same tags, the error body.
    func deadFrame(_ e: QueueEntry, reason: String) -> DataFrame {
        DataFrame(index: e.index, tags: e.frame.tags, data: deadResult(e, reason), message: reason)
    }
}

/// Durable storage of a service's queues. Every method is one transaction: when it returns,
/// its effect is on disk and visible to every other caller (§5.8). Implementations: SQLite
/// (embedded default) and PostgreSQL; the same test suite runs against both.
public protocol QueueStore: Sendable {
    /// Appends an entry with the next index of the service's sequence (shared by the input
    /// queue and the sink) and a fresh `requestId` tag; 429 when the queue holds `maxLength`.
    func put(_ queue: QueueName, data: Data, tags: [String: String], path: String, priority: Int, maxLength: Int) async throws -> QueueEntry
    /// Up to `length` entries with index ≥ `from` whose tags contain `filter`, in index order;
    /// deleted in the same transaction when `delete`.
    func get(_ queue: QueueName, from: UInt64, length: Int, filter: [String: String], delete: Bool) async throws -> [QueueEntry]
    /// Removes the listed entries wherever they are (commit and delete are the same for the store).
    func delete(_ queue: QueueName, indexes: [UInt64]) async throws
    /// Removes every entry with index < `before`.
    func truncate(_ queue: QueueName, before: UInt64) async throws
    func status(_ queue: QueueName, index: UInt64) async throws -> EntryStatus?
    func stats(_ queue: QueueName) async throws -> QueueStats
    /// Entries pending for this consumer, in index order (redelivered on reconnect).
    func pending(_ queue: QueueName, consumer: String) async throws -> [QueueEntry]
    /// Marks the next deliverable waiting entries (priority, then redeliveries, then index;
    /// index ≥ `from`, tags ⊇ `filter`) pending for `consumer` and counts the delivery: at most
    /// `limit`, and no more than keeps the consumer within `window` held entries. With
    /// `autoCommit` the entries are deleted instead (the window then never fills).
    func claim(_ queue: QueueName, consumer: String, window: Int, from: UInt64, filter: [String: String], autoCommit: Bool, limit: Int) async throws -> [QueueEntry]
    /// Gives a consumer's pending entries back (all of them, or only `index`): waiting again,
    /// ahead of new ones, or dead under `policy`. Returns the indexes that died.
    @discardableResult
    func release(_ queue: QueueName, consumer: String?, index: UInt64?, reason: String, policy: DeliveryPolicy?) async throws -> [UInt64]
    /// A worker's result: writes `result` into the sink under the input entry's index and
    /// removes the input entry, in one transaction, so a result is never duplicated.
    func complete(_ input: QueueName, index: UInt64, result: DataFrame) async throws
    /// The store's floor for `atelier bench queue`: `count` pairs of raw one-row insert and
    /// delete transactions (same durability settings, no queue logic).
    func insertDeleteFloor(count: Int) async throws
}

extension QueueStore {
    /// Claims one entry (see `claim(…limit:)`).
    public func claim(_ queue: QueueName, consumer: String, window: Int, from: UInt64, filter: [String: String], autoCommit: Bool) async throws -> QueueEntry? {
        try await claim(queue, consumer: consumer, window: window, from: from, filter: filter, autoCommit: autoCommit, limit: 1).first
    }

    /// On start-up no consumer exists any more: every pending entry comes back (§6.4).
    public func recover(_ queue: QueueName, policy: DeliveryPolicy?) async throws -> [UInt64] {
        try await release(queue, consumer: nil, index: nil, reason: "the service stopped while it was running", policy: policy)
    }
}
