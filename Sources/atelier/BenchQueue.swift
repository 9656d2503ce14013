import AtelierQueue
import Foundation

/// `atelier bench queue`: items per second through put → deliver → commit with a no-op worker,
/// for 1 and 16 concurrent clients, next to the store's floor (raw one-row insert and delete
/// transactions) measured in the same run. In-process: the HTTP layer is not included.
struct QueueBench {
    let stores: [(name: String, open: () async throws -> any QueueStore)]
    let items: Int
    let clients: [Int]
    let json: Bool

    func run() async throws {
        for (name, open) in stores {
            let store = try await open()
            let floorPairs = min(items, 500)
            let t0 = now()
            try await store.insertDeleteFloor(count: floorPairs)
            let floor = Double(floorPairs) / (now() - t0)
            for n in clients {
                let rate = try await throughput(store: store, clients: n)
                if json {
                    let o: [String: Any] = ["name": "queue", "store": name, "clients": n, "items": items, "items_per_s": rate,
                                            "floor_insert_delete_per_s": floor, "ratio_to_floor": rate / floor,
                                            "median_s": Double(items) / rate, "reference_median_s": NSNull(), "ratio": rate / floor,
                                            "peak_rss_bytes": peakRSS(), "load_average": loadAverage()]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    print(String(format: "queue %@ %2d client(s): %7.0f items/s  (floor: %6.0f insert+delete pairs/s, ratio %.2f; load %.2f)",
                                 name as NSString, n, rate, floor, rate / floor, loadAverage()))
                }
            }
        }
    }

    /// `clients` tasks put `items` entries in all; one consumer (window 16) commits each as it
    /// arrives, without waiting for one commit before taking the next entry (as a watcher whose
    /// commits are separate HTTP requests).
    func throughput(store: any QueueStore, clients: Int) async throws -> Double {
        var config = QueueConfiguration()
        config.maxLength = items + 1
        let service = QueueService(name: "bench-\(UUID().uuidString.prefix(8))", store: store, configuration: config) { _, _ in Data() }
        let payload = Data(repeating: UInt8(ascii: "x"), count: 256)
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let consumer = service.connect(service.input, gid: "eas", uid: "bench", window: 16, from: 0, filter: [:],
                                               indexOnly: false, autoCommit: false)
                try await withThrowingTaskGroup(of: Void.self) { commits in
                    var taken = 0
                    while taken < items, let e = try await consumer.next() {
                        taken += 1
                        commits.addTask { try await service.remove(service.input, indexes: [e.index]) }
                    }
                    try await commits.waitForAll()
                }
                await consumer.close(reason: "bench done")
            }
            for c in 0..<clients {
                let share = items / clients + (c < items % clients ? 1 : 0)
                group.addTask {
                    for _ in 0..<share { _ = try await service.put(service.input, data: payload, tags: ["task_id": "b"], path: "/", priority: 0) }
                }
            }
            try await group.waitForAll()
        }
        return Double(items) / (now() - start)
    }
}
