import AtelierTensor
import Dispatch
import Foundation
import Testing

/// What keeps the step loop free of allocation calls: activation storages handed out again (the
/// buffer and its storage object), interned shapes, and the engine's thread pool, which runs
/// every part of a job exactly once whether it is posted nested, concurrently or alone. The
/// allocation count itself is measured in the `atelier` executable, which interposes malloc
/// (`tests_py/test_cli.py`: a UNet forward makes 0 calls, and no fresh buffer after the warm-up).
/// Serialized: two of these tests set the process's thread count.
@Suite(.serialized) struct AllocationTests {
    @Test func aStorageInUseIsNeverHandedOutAgain() {
        let dims = Dims(7, 1031)  // a size no other test makes
        let tensors = (0..<4).map { _ in Tensor(uninitialized: dims) }
        #expect(Set(tensors.map { ObjectIdentifier($0.storage) }).count == 4)
        let fifth = Tensor(uninitialized: dims)
        #expect(!tensors.contains { $0.storage === fifth.storage })
        withExtendedLifetime(tensors) {}
    }

    @Test func tensorsOfOneShapeShareOneShapeArray() {
        let a = Tensor(uninitialized: Dims(3, 5, 11)), b = Tensor(uninitialized: [3, 5, 11])
        let c = Tensor(zeros: [15, 11]).reshaped(Dims(3, 5, 11))
        let base = { (t: Tensor) in t.shape.withUnsafeBufferPointer { $0.baseAddress } }
        #expect(base(a) == base(b) && base(b) == base(c))
        #expect(a.shape == [3, 5, 11] && a.dims == Dims(3, 5, 11) && a.dims.count == 165)
        #expect(a.dims.replacingLast(2).array == [3, 5, 2] && a.dims.replacing(0, with: 1).array == [1, 5, 11])
        #expect(Dims([1, 2, 3, 4, 5, 6, 7]) == nil, "past Dims.maxRank")
    }

    @Test func aParallelJobRunsEveryPartOnceAndASplitInsideItRunsEveryIndexOnce() {
        let saved = Compute.threads
        Compute.setThreads(3)
        defer { Compute.setThreads(saved) }
        let parts = 50, inner = 10
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: parts * inner)
        counts.initialize(repeating: 0, count: parts * inner)
        defer { counts.deallocate() }
        Compute.parallel(tasks: parts, counts) { counts, p in
            // posted while the pool runs the outer job: runs on this part's thread
            Compute.split(inner, minimum: 1, (counts, p, inner)) { c, range in
                for i in range { c.0[c.1 * c.2 + i] += 1 }
            }
        }
        #expect((0..<(parts * inner)).allSatisfy { counts[$0] == 1 })
    }

    @Test func jobsPostedFromTwoThreadsAtOnceAllComplete() {
        let saved = Compute.threads
        Compute.setThreads(2)
        defer { Compute.setThreads(saved) }
        let n = 1000, jobs = 200
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 2 * jobs)
        sums.initialize(repeating: 0, count: 2 * jobs)
        defer { sums.deallocate() }
        // each thread's jobs write their own slots; one finds the pool busy and runs alone
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
            let values = UnsafeMutablePointer<Int>.allocate(capacity: n)
            defer { values.deallocate() }
            for j in 0..<jobs {
                Compute.split(n, minimum: 100, (values, j)) { c, range in
                    for i in range { c.0[i] = i + c.1 }
                }
                sums[thread * jobs + j] = (0..<n).reduce(0) { $0 + values[$1] }
            }
        }
        #expect((0..<(2 * jobs)).allSatisfy { sums[$0] == n * (n - 1) / 2 + n * ($0 % jobs) })
    }
}
