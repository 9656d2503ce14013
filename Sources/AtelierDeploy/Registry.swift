import AtelierQueue
import Foundation

/// One deployed service as the registry keeps it.
public struct ServiceRecord: Sendable, Codable {
    public var name: String
    /// the spec as given
    public var spec: Data
    /// the caller's token (`Authorization`)
    public var token: String
    /// `running` or `stopped`: what the operator asked for
    public var desired: String
    public var instances: Int
    public var created: Date
    public var updated: Date
}

/// A running instance process as the registry keeps it, so a restarted controller can adopt it.
public struct InstanceRecord: Sendable, Codable {
    public var service: String
    public var id: String
    public var pid: Int32
    public var port: Int
    public var started: Date
}

/// The controller's registry: services and their instance processes in SQLite
/// (`registry.sqlite3`, WAL), serialised by a lock.
public final class Registry: @unchecked Sendable {
    private let db: SQLiteConnection
    private let lock = NSLock()

    public init(path: String) throws {
        db = try SQLiteConnection(path: path)
        try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        try db.execute("""
            CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, spec BLOB NOT NULL, token TEXT NOT NULL,
              desired TEXT NOT NULL, instances INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS instances (service TEXT NOT NULL, id TEXT NOT NULL, pid INTEGER NOT NULL, port INTEGER NOT NULL,
              started REAL NOT NULL, PRIMARY KEY (service, id));
            """)
    }

    func locked<T>(_ body: () throws -> T) rethrows -> T { try lock.withLock(body) }

    public func services() throws -> [ServiceRecord] {
        try locked { try db.query("SELECT name, spec, token, desired, instances, created, updated FROM services ORDER BY name").map(Self.service) }
    }

    public func service(_ name: String) throws -> ServiceRecord? {
        try locked { try db.query("SELECT name, spec, token, desired, instances, created, updated FROM services WHERE name = ?", [.text(name)]).first.map(Self.service) }
    }

    /// Inserts a new service; false when the name is taken.
    public func insert(_ r: ServiceRecord) throws -> Bool {
        try locked {
            guard try db.query("SELECT 1 FROM services WHERE name = ?", [.text(r.name)]).isEmpty else { return false }
            try db.run("INSERT INTO services VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.text(r.name), .blob(r.spec), .text(r.token), .text(r.desired), .int(Int64(r.instances)),
                        .text(String(r.created.timeIntervalSince1970)), .text(String(r.updated.timeIntervalSince1970))])
            return true
        }
    }

    public func update(_ r: ServiceRecord) throws {
        try locked {
            try db.run("UPDATE services SET spec = ?, token = ?, desired = ?, instances = ?, updated = ? WHERE name = ?",
                       [.blob(r.spec), .text(r.token), .text(r.desired), .int(Int64(r.instances)), .text(String(Date().timeIntervalSince1970)), .text(r.name)])
        }
    }

    public func delete(_ name: String) throws {
        try locked {
            try db.run("DELETE FROM instances WHERE service = ?", [.text(name)])
            try db.run("DELETE FROM services WHERE name = ?", [.text(name)])
        }
    }

    public func instances(_ service: String) throws -> [InstanceRecord] {
        try locked {
            try db.query("SELECT service, id, pid, port, started FROM instances WHERE service = ? ORDER BY id", [.text(service)]).map {
                InstanceRecord(service: $0.text(0), id: $0.text(1), pid: Int32($0.int(2)), port: $0.int(3),
                               started: Date(timeIntervalSince1970: Double($0.text(4)) ?? 0))
            }
        }
    }

    public func putInstance(_ r: InstanceRecord) throws {
        try locked {
            try db.run("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?)",
                       [.text(r.service), .text(r.id), .int(Int64(r.pid)), .int(Int64(r.port)), .text(String(r.started.timeIntervalSince1970))])
        }
    }

    public func removeInstance(service: String, id: String) throws {
        try locked { try db.run("DELETE FROM instances WHERE service = ? AND id = ?", [.text(service), .text(id)]) }
    }

    static func service(_ row: SQLiteRow) -> ServiceRecord {
        ServiceRecord(name: row.text(0), spec: row.blob(1), token: row.text(2), desired: row.text(3),
                      instances: row.int(4), created: Date(timeIntervalSince1970: Double(row.text(5)) ?? 0),
                      updated: Date(timeIntervalSince1970: Double(row.text(6)) ?? 0))
    }
}
