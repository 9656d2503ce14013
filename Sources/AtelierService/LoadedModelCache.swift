import Foundation

/// The last few models loaded from files, keyed by the file (path, size, modification time) and
/// a layout the caller names, so an edited or replaced file is loaded again.
final class LoadedModelCache<Model>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(key: String, model: Model)] = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// The cached model for `path` and `layout`, else `load()`'s, which then goes first (the
    /// oldest drops out beyond `capacity`).
    func model(path: String, layout: String, load: () throws -> Model) rethrows -> Model {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let key = "\(path)|\(attributes?[.size] ?? 0)|\((attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)|\(layout)"
        if let hit = lock.withLock({ entries.first { $0.key == key }?.model }) { return hit }
        let model = try load()
        lock.withLock {
            entries.removeAll { $0.key == key }
            entries.insert((key, model), at: 0)
            if entries.count > capacity { entries.removeLast() }
        }
        return model
    }
}
