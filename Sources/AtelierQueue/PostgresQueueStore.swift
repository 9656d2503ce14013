import Foundation
import Logging
import PostgresNIO

/// The queue store on PostgreSQL (for several processes sharing one queue): the same tables as
/// the SQLite store, one transaction per operation, and `FOR UPDATE SKIP LOCKED` so that
/// competing consumers claim different entries without waiting on each other.
/// URL: `postgres://user[:password]@host[:port]/database[?schema=NAME]`.
public final class PostgresQueueStore: QueueStore, @unchecked Sendable {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    public let schema: String

    public init(url: String, logger: Logger = Logger(label: "atelier.queue.postgres")) async throws {
        guard let c = URLComponents(string: url), c.scheme == "postgres" || c.scheme == "postgresql", let host = c.host, !host.isEmpty else {
            throw QueueError(400, field: "--queue-db", "expected postgres://user[:password]@host[:port]/database[?schema=NAME], got '\(url)'")
        }
        let database = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        schema = c.queryItems?.first { $0.name == "schema" }?.value ?? "atelier_queue"
        guard schema.range(of: "^[a-z_][a-z0-9_]{0,62}$", options: .regularExpression) != nil else {
            throw QueueError(400, field: "--queue-db", "schema '\(schema)': lower-case letters, digits and _ only")
        }
        var config = PostgresClient.Configuration(host: host, port: c.port ?? 5432, username: c.user ?? "postgres",
                                                  password: c.password, database: database.isEmpty ? nil : database, tls: .disable)
        config.options.additionalStartupParameters = [("search_path", schema)]
        self.logger = logger
        let client = PostgresClient(configuration: config, backgroundLogger: logger)
        self.client = client
        runner = Task { await client.run() }
        do {
            try await client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: logger)
            for sql in [
                "CREATE TABLE IF NOT EXISTS sequences(service TEXT PRIMARY KEY, last BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS queues(name TEXT PRIMARY KEY, last_entry BIGINT NOT NULL)",
                """
                CREATE TABLE IF NOT EXISTS entries(queue TEXT NOT NULL, idx BIGINT NOT NULL, priority INT NOT NULL,
                    redelivered INT NOT NULL DEFAULT 0, consumer TEXT, deliveries INT NOT NULL DEFAULT 0, path TEXT NOT NULL,
                    tags TEXT NOT NULL, data BYTEA NOT NULL, message TEXT NOT NULL DEFAULT '', PRIMARY KEY(queue, idx))
                """,
                "CREATE INDEX IF NOT EXISTS entries_waiting ON entries(queue, priority DESC, redelivered DESC, idx) WHERE consumer IS NULL",
                "CREATE INDEX IF NOT EXISTS entries_pending ON entries(queue, consumer) WHERE consumer IS NOT NULL",
            ] {
                try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            }
        } catch {
            runner.cancel()
            throw QueueError(503, field: "--queue-db", "cannot prepare the queue tables at \(host):\(c.port ?? 5432)/\(database): \(String(reflecting: error))")
        }
    }

    deinit { runner.cancel() }

    private func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { conn in try await body(conn) }
        } catch let e as PostgresTransactionError {
            // a refusal from inside the transaction (429 full queue, …) is the caller's error
            if let refusal = e.closureError as? QueueError, e.rollbackError == nil { throw refusal }
            throw e
        }
    }

    private typealias Row = (Int, String, Data, String, String, Int, Int, String?)
    private static let columns = "idx, tags, data, message, path, priority, deliveries, consumer"

    private static func entry(_ r: Row) -> QueueEntry {
        QueueEntry(frame: DataFrame(index: UInt64(r.0), tags: SQLiteQueueStore.decodeTags(r.1), data: r.2, message: r.3),
                   path: r.4, priority: r.5, deliveries: r.6, consumer: r.7)
    }

    private func entries(_ conn: PostgresConnection, _ query: PostgresQuery) async throws -> [QueueEntry] {
        var out: [QueueEntry] = []
        for try await row in try await conn.query(query, logger: logger).decode(Row.self) { out.append(Self.entry(row)) }
        return out
    }

    private func scalar(_ conn: PostgresConnection, _ query: PostgresQuery) async throws -> Int? {
        for try await (v) in try await conn.query(query, logger: logger).decode(Int.self) { return v }
        return nil
    }

    private func noteIssued(_ conn: PostgresConnection, _ queue: QueueName, _ index: UInt64) async throws {
        try await conn.query("""
            INSERT INTO queues(name, last_entry) VALUES(\(queue.description), \(Int(index)))
            ON CONFLICT(name) DO UPDATE SET last_entry = GREATEST(queues.last_entry, EXCLUDED.last_entry)
            """, logger: logger)
    }

    public func put(_ queue: QueueName, data: Data, tags: [String: String], path: String, priority: Int, maxLength: Int) async throws -> QueueEntry {
        try await transaction { conn in
            // the sequence row serialises puts of one service, which also makes the length check exact
            let index = UInt64(try await scalar(conn, """
                INSERT INTO sequences(service, last) VALUES(\(queue.service), 1)
                ON CONFLICT(service) DO UPDATE SET last = sequences.last + 1 RETURNING last
                """)!)
            let length = try await scalar(conn, "SELECT count(*)::BIGINT FROM entries WHERE queue = \(queue.description)") ?? 0
            guard length < maxLength else {
                throw QueueError(429, field: "queue", "queue \(queue) is full (\(maxLength) entries); retry after results are committed")
            }
            var tags = tags
            tags["requestId"] = UUID().uuidString.lowercased()
            try await conn.query("""
                INSERT INTO entries(queue, idx, priority, path, tags, data)
                VALUES(\(queue.description), \(Int(index)), \(priority), \(path), \(SQLiteQueueStore.encodeTags(tags)), \(data))
                """, logger: logger)
            try await noteIssued(conn, queue, index)
            return QueueEntry(frame: DataFrame(index: index, tags: tags, data: data), path: path, priority: priority, deliveries: 0, consumer: nil)
        }
    }

    public func get(_ queue: QueueName, from: UInt64, length: Int, filter: [String: String], delete: Bool) async throws -> [QueueEntry] {
        try await transaction { conn in
            var found: [QueueEntry] = []
            let candidates = try await entries(conn, """
                SELECT idx, tags, data, message, path, priority, deliveries, consumer FROM entries
                WHERE queue = \(queue.description) AND idx >= \(Int(min(from, UInt64(Int.max)))) ORDER BY idx
                LIMIT \(filter.isEmpty ? length : 10_000)
                """)
            for e in candidates where filter.allSatisfy({ e.frame.tags[$0.key] == $0.value }) {
                found.append(e)
                if found.count >= length { break }
            }
            if delete {
                for e in found { try await conn.query("DELETE FROM entries WHERE queue = \(queue.description) AND idx = \(Int(e.index))", logger: logger) }
            }
            return found
        }
    }

    public func delete(_ queue: QueueName, indexes: [UInt64]) async throws {
        let list = indexes.map { Int(min($0, UInt64(Int.max))) }
        try await transaction { conn in
            try await conn.query("DELETE FROM entries WHERE queue = \(queue.description) AND idx = ANY(\(list))", logger: logger)
        }
    }

    public func truncate(_ queue: QueueName, before: UInt64) async throws {
        try await transaction { conn in
            try await conn.query("DELETE FROM entries WHERE queue = \(queue.description) AND idx < \(Int(min(before, UInt64(Int.max))))", logger: logger)
        }
    }

    public func status(_ queue: QueueName, index: UInt64) async throws -> EntryStatus? {
        try await transaction { conn in
            var found: (String?, Int, Int)?
            for try await row in try await conn.query("""
                SELECT consumer, priority, redelivered FROM entries WHERE queue = \(queue.description) AND idx = \(Int(min(index, UInt64(Int.max))))
                """, logger: logger).decode((String?, Int, Int).self) { found = row }
            guard let (consumer, p, r) = found else { return nil }
            if let consumer { return .pending(consumer: consumer) }
            let ahead = try await scalar(conn, """
                SELECT count(*)::BIGINT FROM entries WHERE queue = \(queue.description) AND consumer IS NULL
                AND (priority > \(p) OR (priority = \(p) AND redelivered > \(r)) OR (priority = \(p) AND redelivered = \(r) AND idx < \(Int(index))))
                """) ?? 0
            return .waiting(position: ahead)
        }
    }

    public func stats(_ queue: QueueName) async throws -> QueueStats {
        try await transaction { conn in
            var length = 0, first = 0
            for try await (n, f) in try await conn.query("""
                SELECT count(*)::BIGINT, coalesce(min(idx), 0)::BIGINT FROM entries WHERE queue = \(queue.description)
                """, logger: logger).decode((Int, Int).self) { length = n; first = f }
            let last = try await scalar(conn, "SELECT last_entry FROM queues WHERE name = \(queue.description)") ?? 0
            return QueueStats(length: length, firstEntry: UInt64(first), lastEntry: UInt64(last))
        }
    }

    public func pending(_ queue: QueueName, consumer: String) async throws -> [QueueEntry] {
        try await transaction { conn in
            try await entries(conn, """
                SELECT idx, tags, data, message, path, priority, deliveries, consumer FROM entries
                WHERE queue = \(queue.description) AND consumer = \(consumer) ORDER BY idx
                """)
        }
    }

    public func claim(_ queue: QueueName, consumer: String, window: Int, from: UInt64, filter: [String: String], autoCommit: Bool, limit: Int) async throws -> [QueueEntry] {
        try await transaction { conn in
            var room = limit
            if !autoCommit {
                let held = try await scalar(conn, "SELECT count(*)::BIGINT FROM entries WHERE queue = \(queue.description) AND consumer = \(consumer)") ?? 0
                room = min(limit, window - held)
            }
            guard room > 0 else { return [] }
            let candidates = try await entries(conn, """
                SELECT idx, tags, data, message, path, priority, deliveries, consumer FROM entries
                WHERE queue = \(queue.description) AND consumer IS NULL AND idx >= \(Int(min(from, UInt64(Int.max))))
                ORDER BY priority DESC, redelivered DESC, idx LIMIT \(filter.isEmpty ? room : 1000) FOR UPDATE SKIP LOCKED
                """)
            var chosen = Array(candidates.filter { e in filter.allSatisfy { e.frame.tags[$0.key] == $0.value } }.prefix(room))
            for i in chosen.indices {
                chosen[i].deliveries += 1
                if autoCommit {
                    try await conn.query("DELETE FROM entries WHERE queue = \(queue.description) AND idx = \(Int(chosen[i].index))", logger: logger)
                } else {
                    chosen[i].consumer = consumer
                    try await conn.query("""
                        UPDATE entries SET consumer = \(consumer), deliveries = deliveries + 1 WHERE queue = \(queue.description) AND idx = \(Int(chosen[i].index))
                        """, logger: logger)
                }
            }
            return chosen
        }
    }

    public func release(_ queue: QueueName, consumer: String?, index: UInt64?, reason: String, policy: DeliveryPolicy?) async throws -> [UInt64] {
        try await transaction { conn in
            let held = try await entries(conn, """
                SELECT idx, tags, data, message, path, priority, deliveries, consumer FROM entries
                WHERE queue = \(queue.description) AND consumer IS NOT NULL
                AND (\(consumer)::TEXT IS NULL OR consumer = \(consumer)) AND (\(index.map { Int($0) })::BIGINT IS NULL OR idx = \(index.map { Int($0) }))
                ORDER BY idx FOR UPDATE
                """)
            var dead: [UInt64] = []
            for e in held {
                if let policy, !queue.isSink, policy.isDead(e) {
                    try await insertResult(conn, queue.sink, policy.deadFrame(e, reason: reason))
                    try await conn.query("DELETE FROM entries WHERE queue = \(queue.description) AND idx = \(Int(e.index))", logger: logger)
                    dead.append(e.index)
                } else {
                    try await conn.query("""
                        UPDATE entries SET consumer = NULL, redelivered = 1 WHERE queue = \(queue.description) AND idx = \(Int(e.index))
                        """, logger: logger)
                }
            }
            return dead
        }
    }

    private func insertResult(_ conn: PostgresConnection, _ sink: QueueName, _ frame: DataFrame) async throws {
        try await conn.query("""
            INSERT INTO entries(queue, idx, priority, path, tags, data, message)
            VALUES(\(sink.description), \(Int(frame.index)), 0, '', \(SQLiteQueueStore.encodeTags(frame.tags)), \(frame.data), \(frame.message))
            ON CONFLICT DO NOTHING
            """, logger: logger)
        try await noteIssued(conn, sink, frame.index)
    }

    public func complete(_ input: QueueName, index: UInt64, result: DataFrame) async throws {
        try await transaction { conn in
            try await insertResult(conn, input.sink, result)
            try await conn.query("DELETE FROM entries WHERE queue = \(input.description) AND idx = \(Int(index))", logger: logger)
        }
    }

    public func insertDeleteFloor(count: Int) async throws {
        let payload = Data(repeating: 7, count: 64)
        for i in 0..<count {
            try await transaction { conn in
                try await conn.query("INSERT INTO entries(queue, idx, priority, path, tags, data) VALUES('~floor', \(i), 0, '', '{}', \(payload))", logger: logger)
            }
            try await transaction { conn in
                try await conn.query("DELETE FROM entries WHERE queue = '~floor' AND idx = \(i)", logger: logger)
            }
        }
    }
}
