import CSQLite
import Foundation

/// The embedded queue store: one SQLite file in WAL mode with `synchronous=FULL`, so a put,
/// commit or result is on disk before its answer is sent. Calls run one at a time on a private
/// serial queue (SQLite serialises writers anyway) and never block a caller's thread.
public final class SQLiteQueueStore: QueueStore, @unchecked Sendable {
    private let db: SQLiteConnection
    private let serial = DispatchQueue(label: "atelier.queue.sqlite")
    public let path: String

    public init(path: String) throws {
        self.path = path
        db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("PRAGMA busy_timeout=5000")
        try db.execute("""
            CREATE TABLE IF NOT EXISTS sequences(service TEXT PRIMARY KEY, last INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS queues(name TEXT PRIMARY KEY, last_entry INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS entries(
                queue TEXT NOT NULL, idx INTEGER NOT NULL, priority INTEGER NOT NULL, redelivered INTEGER NOT NULL DEFAULT 0,
                consumer TEXT, deliveries INTEGER NOT NULL DEFAULT 0, path TEXT NOT NULL, tags TEXT NOT NULL,
                data BLOB NOT NULL, message TEXT NOT NULL DEFAULT '', PRIMARY KEY(queue, idx));
            CREATE INDEX IF NOT EXISTS entries_waiting ON entries(queue, priority DESC, redelivered DESC, idx) WHERE consumer IS NULL;
            CREATE INDEX IF NOT EXISTS entries_pending ON entries(queue, consumer) WHERE consumer IS NOT NULL;
            CREATE TABLE IF NOT EXISTS lengths(queue TEXT PRIMARY KEY, n INTEGER NOT NULL);
            CREATE TRIGGER IF NOT EXISTS entries_counted_in AFTER INSERT ON entries BEGIN
                INSERT INTO lengths(queue, n) VALUES(NEW.queue, 1) ON CONFLICT(queue) DO UPDATE SET n = n + 1;
            END;
            CREATE TRIGGER IF NOT EXISTS entries_counted_out AFTER DELETE ON entries BEGIN
                UPDATE lengths SET n = n - 1 WHERE queue = OLD.queue;
            END;
            """)
        // Queue lengths are kept by the triggers (a put checks `stream.maxLength` in O(1)); recounted
        // once at open so that a file written before the triggers existed is right too.
        try db.execute("BEGIN IMMEDIATE; DELETE FROM lengths; INSERT INTO lengths SELECT queue, count(*) FROM entries GROUP BY queue; COMMIT")
    }

    private typealias Work = (body: (SQLiteConnection) throws -> any Sendable, done: (Result<any Sendable, Error>) -> Void)
    private let pendingLock = NSLock()
    private var pendingWork: [Work] = []
    private var draining = false

    /// Runs `body` as its own transaction and returns once it is durable. Concurrent callers are
    /// group-committed: the bodies waiting when the serial queue gets to them run in one
    /// `BEGIN IMMEDIATE … COMMIT` (one fsync), each inside a savepoint so that one failing body
    /// rolls back only its own changes; every caller is answered only after the COMMIT.
    private func transaction<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let value: any Sendable = try await withCheckedThrowingContinuation { (cont: CheckedContinuation<any Sendable, Error>) in
            let startDrain = pendingLock.withLock { () -> Bool in
                pendingWork.append((body: { try body($0) }, done: { cont.resume(with: $0) }))
                defer { draining = true }
                return !draining
            }
            if startDrain { serial.async { self.drain() } }
        }
        return value as! T
    }

    private func drain() {
        while true {
            let batch = pendingLock.withLock { () -> [Work] in
                let b = pendingWork
                pendingWork.removeAll()
                if b.isEmpty { draining = false }
                return b
            }
            if batch.isEmpty { return }
            var results: [Result<any Sendable, Error>] = []
            do {
                try db.execute("BEGIN IMMEDIATE")
                for w in batch {
                    try db.execute("SAVEPOINT op")
                    do {
                        results.append(.success(try w.body(db)))
                        try db.execute("RELEASE op")
                    } catch {
                        try db.execute("ROLLBACK TO op")
                        try db.execute("RELEASE op")
                        results.append(.failure(error))
                    }
                }
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                results = batch.map { _ in .failure(error) }
            }
            for (w, r) in zip(batch, results) { w.done(r) }
        }
    }

    static func encodeTags(_ tags: [String: String]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: tags, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func decodeTags(_ s: String) -> [String: String] {
        (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: String] ?? [:]
    }

    private static let columns = "idx, tags, data, message, path, priority, deliveries, consumer"

    private static func entry(_ row: SQLiteRow) -> QueueEntry {
        QueueEntry(frame: DataFrame(index: UInt64(row.int(0)), tags: decodeTags(row.text(1)), data: row.blob(2), message: row.text(3)),
                   path: row.text(4), priority: row.int(5), deliveries: row.int(6), consumer: row.optionalText(7))
    }

    private static func noteIssued(_ db: SQLiteConnection, _ queue: QueueName, _ index: UInt64) throws {
        try db.run("INSERT INTO queues(name, last_entry) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET last_entry = max(last_entry, ?2)",
                   [.text(queue.description), .int(Int64(index))])
    }

    public func put(_ queue: QueueName, data: Data, tags: [String: String], path: String, priority: Int, maxLength: Int) async throws -> QueueEntry {
        try await transaction { db in
            let length = try db.query("SELECT n FROM lengths WHERE queue = ?1", [.text(queue.description)]).first?.int(0) ?? 0
            guard length < maxLength else {
                throw QueueError(429, field: "queue", "queue \(queue) is full (\(maxLength) entries); retry after results are committed")
            }
            try db.run("INSERT INTO sequences(service, last) VALUES(?1, 1) ON CONFLICT(service) DO UPDATE SET last = last + 1",
                       [.text(queue.service)])
            let index = UInt64(try db.query("SELECT last FROM sequences WHERE service = ?1", [.text(queue.service)]).first!.int(0))
            var tags = tags
            tags["requestId"] = UUID().uuidString.lowercased()
            try db.run("INSERT INTO entries(queue, idx, priority, path, tags, data) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                       [.text(queue.description), .int(Int64(index)), .int(Int64(priority)), .text(path), .text(Self.encodeTags(tags)), .blob(data)])
            try Self.noteIssued(db, queue, index)
            return QueueEntry(frame: DataFrame(index: index, tags: tags, data: data), path: path, priority: priority, deliveries: 0, consumer: nil)
        }
    }

    public func get(_ queue: QueueName, from: UInt64, length: Int, filter: [String: String], delete: Bool) async throws -> [QueueEntry] {
        try await transaction { db in
            var found: [QueueEntry] = []
            for row in try db.query("SELECT \(Self.columns) FROM entries WHERE queue = ?1 AND idx >= ?2 ORDER BY idx",
                                    [.text(queue.description), .int(Int64(from))]) {
                let e = Self.entry(row)
                guard filter.allSatisfy({ e.frame.tags[$0.key] == $0.value }) else { continue }
                found.append(e)
                if found.count >= length { break }
            }
            if delete {
                for e in found { try db.run("DELETE FROM entries WHERE queue = ?1 AND idx = ?2", [.text(queue.description), .int(Int64(e.index))]) }
            }
            return found
        }
    }

    public func delete(_ queue: QueueName, indexes: [UInt64]) async throws {
        try await transaction { db in
            for i in indexes { try db.run("DELETE FROM entries WHERE queue = ?1 AND idx = ?2", [.text(queue.description), .int(Int64(i))]) }
        }
    }

    public func truncate(_ queue: QueueName, before: UInt64) async throws {
        try await transaction { db in
            try db.run("DELETE FROM entries WHERE queue = ?1 AND idx < ?2", [.text(queue.description), .int(Int64(min(before, UInt64(Int64.max))))])
        }
    }

    public func status(_ queue: QueueName, index: UInt64) async throws -> EntryStatus? {
        try await transaction { db in
            guard let row = try db.query("SELECT consumer, priority, redelivered FROM entries WHERE queue = ?1 AND idx = ?2",
                                         [.text(queue.description), .int(Int64(index))]).first else { return nil }
            if let consumer = row.optionalText(0) { return .pending(consumer: consumer) }
            let p = row.int(1), r = row.int(2)
            let ahead = try db.query("""
                SELECT count(*) FROM entries WHERE queue = ?1 AND consumer IS NULL
                AND (priority > ?2 OR (priority = ?2 AND redelivered > ?3) OR (priority = ?2 AND redelivered = ?3 AND idx < ?4))
                """, [.text(queue.description), .int(Int64(p)), .int(Int64(r)), .int(Int64(index))]).first?.int(0) ?? 0
            return .waiting(position: ahead)
        }
    }

    public func stats(_ queue: QueueName) async throws -> QueueStats {
        try await transaction { db in
            let length = try db.query("SELECT n FROM lengths WHERE queue = ?1", [.text(queue.description)]).first?.int(0) ?? 0
            let first = try db.query("SELECT coalesce(min(idx), 0) FROM entries WHERE queue = ?1", [.text(queue.description)]).first?.int(0) ?? 0
            let last = try db.query("SELECT last_entry FROM queues WHERE name = ?1", [.text(queue.description)]).first?.int(0) ?? 0
            return QueueStats(length: length, firstEntry: UInt64(first), lastEntry: UInt64(last))
        }
    }

    public func pending(_ queue: QueueName, consumer: String) async throws -> [QueueEntry] {
        try await transaction { db in
            try db.query("SELECT \(Self.columns) FROM entries WHERE queue = ?1 AND consumer = ?2 ORDER BY idx",
                         [.text(queue.description), .text(consumer)]).map(Self.entry)
        }
    }

    public func claim(_ queue: QueueName, consumer: String, window: Int, from: UInt64, filter: [String: String], autoCommit: Bool, limit: Int) async throws -> [QueueEntry] {
        try await transaction { db in
            var room = limit
            if !autoCommit {
                let held = try db.query("SELECT count(*) FROM entries WHERE queue = ?1 AND consumer = ?2",
                                        [.text(queue.description), .text(consumer)]).first?.int(0) ?? 0
                room = min(limit, window - held)
            }
            guard room > 0 else { return [] }
            let sql = "SELECT \(Self.columns) FROM entries WHERE queue = ?1 AND consumer IS NULL AND idx >= ?2 ORDER BY priority DESC, redelivered DESC, idx"
            var chosen: [QueueEntry]
            if filter.isEmpty {
                chosen = try db.query(sql + " LIMIT ?3", [.text(queue.description), .int(Int64(from)), .int(Int64(room))]).map(Self.entry)
            } else {
                chosen = Array(try db.query(sql, [.text(queue.description), .int(Int64(from))]).lazy.map(Self.entry)
                    .filter { e in filter.allSatisfy { e.frame.tags[$0.key] == $0.value } }.prefix(room))
            }
            for i in chosen.indices {
                chosen[i].deliveries += 1
                if autoCommit {
                    try db.run("DELETE FROM entries WHERE queue = ?1 AND idx = ?2", [.text(queue.description), .int(Int64(chosen[i].index))])
                } else {
                    chosen[i].consumer = consumer
                    try db.run("UPDATE entries SET consumer = ?3, deliveries = deliveries + 1 WHERE queue = ?1 AND idx = ?2",
                               [.text(queue.description), .int(Int64(chosen[i].index)), .text(consumer)])
                }
            }
            return chosen
        }
    }

    public func release(_ queue: QueueName, consumer: String?, index: UInt64?, reason: String, policy: DeliveryPolicy?) async throws -> [UInt64] {
        try await transaction { db in
            var sql = "SELECT \(Self.columns) FROM entries WHERE queue = ?1 AND consumer IS NOT NULL"
            var binds: [SQLiteValue] = [.text(queue.description)]
            if let consumer { sql += " AND consumer = ?\(binds.count + 1)"; binds.append(.text(consumer)) }
            if let index { sql += " AND idx = ?\(binds.count + 1)"; binds.append(.int(Int64(index))) }
            var dead: [UInt64] = []
            for e in try db.query(sql + " ORDER BY idx", binds).map(Self.entry) {
                if let policy, !queue.isSink, policy.isDead(e) {
                    let frame = policy.deadFrame(e, reason: reason)
                    try Self.insertResult(db, queue.sink, frame)
                    try db.run("DELETE FROM entries WHERE queue = ?1 AND idx = ?2", [.text(queue.description), .int(Int64(e.index))])
                    dead.append(e.index)
                } else {
                    try db.run("UPDATE entries SET consumer = NULL, redelivered = 1 WHERE queue = ?1 AND idx = ?2",
                               [.text(queue.description), .int(Int64(e.index))])
                }
            }
            return dead
        }
    }

    private static func insertResult(_ db: SQLiteConnection, _ sink: QueueName, _ frame: DataFrame) throws {
        try db.run("INSERT OR IGNORE INTO entries(queue, idx, priority, path, tags, data, message) VALUES(?1, ?2, 0, '', ?3, ?4, ?5)",
                   [.text(sink.description), .int(Int64(frame.index)), .text(encodeTags(frame.tags)), .blob(frame.data), .text(frame.message)])
        try noteIssued(db, sink, frame.index)
    }

    public func complete(_ input: QueueName, index: UInt64, result: DataFrame) async throws {
        try await transaction { db in
            try Self.insertResult(db, input.sink, result)
            try db.run("DELETE FROM entries WHERE queue = ?1 AND idx = ?2", [.text(input.description), .int(Int64(index))])
        }
    }
}

extension SQLiteQueueStore {
    public func insertDeleteFloor(count: Int) async throws {
        for i in 0..<count {
            try await transaction { db in
                try db.run("INSERT INTO entries(queue, idx, priority, path, tags, data) VALUES('~floor', ?1, 0, '', '{}', ?2)",
                           [.int(Int64(i)), .blob(Data(repeating: 7, count: 64))])
            }
            try await transaction { db in try db.run("DELETE FROM entries WHERE queue = '~floor' AND idx = ?1", [.int(Int64(i))]) }
        }
    }
}

// MARK: - A small SQLite binding

public enum SQLiteValue: Sendable {
    case int(Int64), text(String), blob(Data), null
}

public struct SQLiteRow {
    public let values: [SQLiteValue]
    public func int(_ i: Int) -> Int { if case .int(let v) = values[i] { return Int(v) }; return 0 }
    public func text(_ i: Int) -> String { optionalText(i) ?? "" }
    public func optionalText(_ i: Int) -> String? {
        switch values[i] {
        case .text(let s): return s
        case .blob(let d): return String(decoding: d, as: UTF8.self)
        default: return nil
        }
    }
    public func blob(_ i: Int) -> Data {
        switch values[i] {
        case .blob(let d): return d
        case .text(let s): return Data(s.utf8)
        default: return Data()
        }
    }
}

/// A store error that names the database file and SQLite's message.
public struct SQLiteError: Error, CustomStringConvertible {
    public let description: String
}

/// One SQLite connection with a cache of prepared statements. Not thread-safe: the store
/// uses it from one serial queue (the controller's registry under a lock).
public final class SQLiteConnection {
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    let path: String
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    public init(path: String) throws {
        self.path = path
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw SQLiteError(description: "\(path): \(message)")
        }
    }

    deinit {
        for s in statements.values { sqlite3_finalize(s) }
        sqlite3_close(handle)
    }

    private func error(_ what: String) -> SQLiteError {
        SQLiteError(description: "\(path): \(what): \(String(cString: sqlite3_errmsg(handle)))")
    }

    public func execute(_ sql: String) throws {
        guard sqlite3_exec(handle, sql, nil, nil, nil) == SQLITE_OK else { throw error(sql.prefix(40) + "…") }
    }

    private func prepared(_ sql: String, _ binds: [SQLiteValue]) throws -> OpaquePointer {
        let stmt: OpaquePointer
        if let s = statements[sql] {
            stmt = s
            sqlite3_reset(stmt)
            sqlite3_clear_bindings(stmt)
        } else {
            var s: OpaquePointer?
            guard sqlite3_prepare_v2(handle, sql, -1, &s, nil) == SQLITE_OK, let s else { throw error("prepare") }
            statements[sql] = s
            stmt = s
        }
        for (i, v) in binds.enumerated() {
            let at = Int32(i + 1)
            switch v {
            case .int(let n): sqlite3_bind_int64(stmt, at, n)
            case .text(let s): sqlite3_bind_text(stmt, at, s, -1, Self.transient)
            case .blob(let d) where d.isEmpty: sqlite3_bind_zeroblob(stmt, at, 0)
            case .blob(let d): _ = d.withUnsafeBytes { sqlite3_bind_blob(stmt, at, $0.baseAddress, Int32($0.count), Self.transient) }
            case .null: sqlite3_bind_null(stmt, at)
            }
        }
        return stmt
    }

    public func run(_ sql: String, _ binds: [SQLiteValue] = []) throws {
        let stmt = try prepared(sql, binds)
        defer { sqlite3_reset(stmt) }
        guard sqlite3_step(stmt) == SQLITE_DONE else { throw error("step") }
    }

    public func query(_ sql: String, _ binds: [SQLiteValue] = []) throws -> [SQLiteRow] {
        let stmt = try prepared(sql, binds)
        defer { sqlite3_reset(stmt) }
        var rows: [SQLiteRow] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error("step") }
            var values: [SQLiteValue] = []
            for c in 0..<sqlite3_column_count(stmt) {
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: values.append(.int(sqlite3_column_int64(stmt, c)))
                case SQLITE_TEXT: values.append(.text(String(cString: sqlite3_column_text(stmt, c))))
                case SQLITE_BLOB:
                    let n = Int(sqlite3_column_bytes(stmt, c))
                    values.append(.blob(n == 0 ? Data() : Data(bytes: sqlite3_column_blob(stmt, c), count: n)))
                default: values.append(.null)
                }
            }
            rows.append(SQLiteRow(values: values))
        }
        return rows
    }
}
