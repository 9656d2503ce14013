import AtelierQueue
import Foundation
import Testing

/// The queue's wire encoding and the store semantics every store must share
/// (eas-queue-protocol.md §5–§8): one suite, run on SQLite and on PostgreSQL.
struct QueueProtoTests {
    @Test func dataFrameEncodesAsTheSpecExampleBytes() throws {
        let frame = DataFrame(index: 21, tags: ["requestId": "r-1", "task_id": "txt2img_0"], data: Data("{\"a\":1}".utf8))
        let hex = QueueProto.encode(frame).map { String(format: "%02x", $0) }.joined()
        let expected = "0815" + "1210" + "0a09" + Data("requestId".utf8).hex + "1203" + Data("r-1".utf8).hex
            + "1214" + "0a07" + Data("task_id".utf8).hex + "1209" + Data("txt2img_0".utf8).hex + "1a07" + Data("{\"a\":1}".utf8).hex
        #expect(hex == expected)
        #expect(try QueueProto.decode(QueueProto.encode(frame)) == frame)
    }

    @Test func listOfNothingIsZeroBytesAndListsRoundTrip() throws {
        #expect(QueueProto.encodeList([]).isEmpty)
        let frames = [DataFrame(index: 1, tags: [:], data: Data([0, 1, 2]), message: "m"), DataFrame(index: 300, tags: ["k": ""], data: Data())]
        #expect(try QueueProto.decodeList(QueueProto.encodeList(frames)) == frames)
    }

    @Test func truncatedInputIsAnErrorNotACrash() {
        #expect(throws: QueueProto.DecodeError.self) { try QueueProto.decode(Data([0x1a, 0x05, 0x01])) }
        #expect(throws: QueueProto.DecodeError.self) { try QueueProto.decode(Data([0x08, 0xff])) }
    }
}

extension Data {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

/// Makes a fresh store of the named kind: a temp SQLite file, or a new schema on the PostgreSQL
/// server named by ATELIER_TEST_POSTGRES (scripts/test starts one; CI=true fails without it).
func makeQueueStore(_ kind: String) async throws -> (any QueueStore)? {
    if kind == "sqlite" {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("queue-\(UUID().uuidString).sqlite3").path
        return try SQLiteQueueStore(path: path)
    }
    guard let url = ProcessInfo.processInfo.environment["ATELIER_TEST_POSTGRES"], !url.isEmpty else {
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("ATELIER_TEST_POSTGRES is not set: scripts/test starts PostgreSQL for the queue-store tests")
        }
        return nil
    }
    let schema = "s_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
    return try await PostgresQueueStore(url: url + (url.contains("?") ? "&" : "?") + "schema=\(schema)")
}

struct QueueStoreTests {
    static let kinds = ["sqlite", "postgres"]
    let input = QueueName.input("svc"), sink = QueueName.sink("svc")
    let noDeath = DeliveryPolicy(maxDelivery: 0) { _, _ in Data() }

    func put(_ s: any QueueStore, _ q: QueueName, _ text: String, priority: Int = 0, tags: [String: String] = [:]) async throws -> QueueEntry {
        try await s.put(q, data: Data(text.utf8), tags: tags, path: "/sdapi/v1/txt2img", priority: priority, maxLength: 100)
    }

    @Test(arguments: kinds) func inputAndSinkShareOneIndexSequenceAndEachPutGetsARequestId(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        let a = try await put(s, input, "a"), b = try await put(s, sink, "b"), c = try await put(s, input, "c")
        #expect([a.index, b.index, c.index] == [1, 2, 3])
        #expect(a.frame.tags["requestId"]?.count == 36 && a.frame.tags["requestId"] != c.frame.tags["requestId"])
        #expect(try await s.stats(input) == QueueStats(length: 2, firstEntry: 1, lastEntry: 3))
        #expect(try await s.stats(sink) == QueueStats(length: 1, firstEntry: 2, lastEntry: 2))
    }

    @Test(arguments: kinds) func claimsFollowPriorityThenRedeliveryThenIndexWithinTheWindow(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        let n1 = try await put(s, input, "n1"), n2 = try await put(s, input, "n2"), n3 = try await put(s, input, "n3")
        let vip = try await put(s, input, "vip", priority: 1)
        #expect(try await s.status(input, index: vip.index) == .waiting(position: 0))
        #expect(try await s.status(input, index: n3.index) == .waiting(position: 3))
        let first = try await s.claim(input, consumer: "eas.a", window: 2, from: 0, filter: [:], autoCommit: false)
        let second = try await s.claim(input, consumer: "eas.a", window: 2, from: 0, filter: [:], autoCommit: false)
        #expect(first?.index == vip.index && first?.deliveries == 1)
        #expect(second?.index == n1.index)
        #expect(try await s.claim(input, consumer: "eas.a", window: 2, from: 0, filter: [:], autoCommit: false) == nil, "window full")
        #expect(try await s.status(input, index: n1.index) == .pending(consumer: "eas.a"))
        // n1 comes back: it goes ahead of n2 (a redelivery), and its delivery count is kept
        try await s.release(input, consumer: "eas.a", index: n1.index, reason: "test", policy: noDeath)
        #expect(try await s.status(input, index: n1.index) == .waiting(position: 0))
        let again = try await s.claim(input, consumer: "eas.b", window: 1, from: 0, filter: [:], autoCommit: false)
        #expect(again?.index == n1.index && again?.deliveries == 2)
        let next = try await s.claim(input, consumer: "eas.c", window: 1, from: 0, filter: [:], autoCommit: false)
        #expect(next?.index == n2.index)
    }

    @Test(arguments: kinds) func anEntryDeliveredMaxDeliveryTimesDiesIntoOneErrorResultUnderItsIndexAndTags(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        let policy = DeliveryPolicy(maxDelivery: 1) { e, reason in Data("dead \(e.index) after \(e.deliveries): \(reason)".utf8) }
        let e = try await put(s, input, "job", tags: ["task_id": "t1"])
        _ = try await s.claim(input, consumer: "eas.w", window: 1, from: 0, filter: [:], autoCommit: false)
        let dead = try await s.recover(input, policy: policy)
        #expect(dead == [e.index])
        #expect(try await s.stats(input).length == 0)
        let results = try await s.get(sink, from: 0, length: 10, filter: [:], delete: false)
        #expect(results.count == 1)
        #expect(results.first?.index == e.index && results.first?.frame.tags == e.frame.tags)
        #expect(String(decoding: results.first!.frame.data, as: UTF8.self) == "dead \(e.index) after 1: the service stopped while it was running")
        // a second recovery finds nothing more to kill
        #expect(try await s.recover(input, policy: policy).isEmpty)
    }

    @Test(arguments: kinds) func completingWritesTheResultUnderTheInputIndexAndRemovesTheInputAtomically(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        let e = try await put(s, input, "job", tags: ["task_id": "x"])
        _ = try await s.claim(input, consumer: "eas.w", window: 1, from: 0, filter: [:], autoCommit: false)
        try await s.complete(input, index: e.index, result: DataFrame(index: e.index, tags: e.frame.tags, data: Data("ok".utf8)))
        // completing twice (a retried publish) does not duplicate the result
        try await s.complete(input, index: e.index, result: DataFrame(index: e.index, tags: e.frame.tags, data: Data("again".utf8)))
        #expect(try await s.stats(input).length == 0)
        let results = try await s.get(sink, from: 0, length: 10, filter: ["task_id": "x"], delete: true)
        #expect(results.map(\.index) == [e.index] && results.first?.frame.data == Data("ok".utf8))
        #expect(try await s.stats(sink) == QueueStats(length: 0, firstEntry: 0, lastEntry: e.index))
    }

    @Test(arguments: kinds) func getFiltersByTagsTruncateCutsBelowAndAFullQueueRefusesWith429(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        for i in 0..<5 { _ = try await put(s, sink, "r\(i)", tags: ["k": i % 2 == 0 ? "even" : "odd"]) }
        let odd = try await s.get(sink, from: 0, length: 10, filter: ["k": "odd"], delete: false)
        #expect(odd.map(\.index) == [2, 4])
        try await s.truncate(sink, before: 4)
        #expect(try await s.get(sink, from: 0, length: 10, filter: [:], delete: false).map(\.index) == [4, 5])
        try await s.delete(sink, indexes: [5, 99])
        #expect(try await s.stats(sink) == QueueStats(length: 1, firstEntry: 4, lastEntry: 5))
        await #expect(throws: QueueError.self) {
            for i in 0..<3 { _ = try await s.put(sink, data: Data([UInt8(i)]), tags: [:], path: "", priority: 0, maxLength: 2) }
        }
        #expect(try await s.stats(sink).length == 2)
    }

    @Test(arguments: kinds) func autoCommitClaimsDeleteAndTagFiltersSelectWhatAConsumerGets(kind: String) async throws {
        guard let s = try await makeQueueStore(kind) else { return }
        _ = try await put(s, sink, "a", tags: ["user": "x"])
        let b = try await put(s, sink, "b", tags: ["user": "y"])
        let got = try await s.claim(sink, consumer: "eas.u", window: 1, from: 0, filter: ["user": "y"], autoCommit: true)
        #expect(got?.index == b.index)
        #expect(try await s.stats(sink).length == 1)
        #expect(try await s.claim(sink, consumer: "eas.u", window: 1, from: 0, filter: ["user": "y"], autoCommit: true) == nil)
        #expect(try await s.claim(sink, consumer: "eas.u", window: 1, from: 2, filter: [:], autoCommit: false) == nil, "index floor")
    }
}
