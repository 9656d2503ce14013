import AsyncHTTPClient
import AtelierService
import Foundation
import Logging
import NIOCore

/// How to start one instance: `atelier serve` with the flags the spec's script asks for, on a
/// free loopback port, in the service's data dir.
struct LaunchPlan: Sendable {
    var executable: String
    var arguments: [String]
    /// includes `ATELIER_TOKEN` (a token on the command line would be readable by every local user)
    var environment: [String: String]
    var capacity: Int
    /// the token this instance checks (the service's when it started: a rotation replaces instances)
    var token: String
}

/// One instance process and its watchdog: started, health-checked on `/internal/ping` every
/// half second, restarted with backoff (0.25 s, doubling up to 8 s; reset after 30 s healthy)
/// when it exits or stops answering. Its output goes to its log file, rotated by copy-and-truncate
/// at `logLimit` (the process keeps its append-mode descriptor, so nothing is lost).
final class InstanceProcess: @unchecked Sendable {
    let id: String
    let service: String
    let plan: LaunchPlan
    let runDir: URL
    let logFile: URL
    let pool: InstancePool
    let registry: Registry
    let logger: Logger
    let logLimit: Int
    private let lock = NSLock()
    private var process: Process?
    private(set) var pid: Int32 = 0
    private(set) var port = 0
    private(set) var restarts = 0
    private(set) var state = "starting"
    private var stopping = false
    private var watchdog: Task<Void, Never>?

    init(id: String, service: String, plan: LaunchPlan, runDir: URL, logFile: URL, pool: InstancePool, registry: Registry,
         logger: Logger, logLimit: Int = 8 << 20) {
        self.id = id
        self.service = service
        self.plan = plan
        self.runDir = runDir
        self.logFile = logFile
        self.pool = pool
        self.registry = registry
        self.logger = logger
        self.logLimit = logLimit
    }

    var status: (pid: Int32, port: Int, state: String, restarts: Int) { lock.withLock { (pid, port, state, restarts) } }

    /// Starts the watchdog; with `adopt`, first takes over a process a previous controller started.
    func start(adopt: InstanceRecord? = nil) {
        let task = Task { await self.watch(adopt: adopt) }
        lock.withLock { watchdog = task }
    }

    /// Waits until the instance answers its ping (or `timeout`).
    func waitHealthy(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if lock.withLock({ state }) == "running" { return true }
            if lock.withLock({ state }) == "failed" { return false }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// SIGTERM (running job finishes), then SIGKILL after `grace`; the registry row goes.
    func stop(grace: Duration = .seconds(30)) async {
        let task = lock.withLock { () -> Task<Void, Never>? in stopping = true; state = "stopping"; return watchdog }
        task?.cancel()
        await task?.value   // a spawn in progress has finished (or killed its child) by now
        await pool.remove(id)
        let pid = lock.withLock { self.pid }
        if pid > 0 {
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while Self.alive(pid) && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if Self.alive(pid) { kill(pid, SIGKILL) }
            while Self.alive(pid) { try? await Task.sleep(for: .milliseconds(20)) }
        }
        try? registry.removeInstance(service: service, id: id)
        lock.withLock { state = "stopped" }
    }

    /// Leaves the process running (the controller itself stops; a new one adopts it).
    func detach() { lock.withLock { watchdog }?.cancel() }

    /// A live process that is this instance (its command line names it): a pid from the registry
    /// may belong to another program after a reboot.
    static func isInstance(_ pid: Int32, id: String) -> Bool {
        guard alive(pid), let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return false }
        let args = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return zip(args, args.dropFirst()).contains { $0 == "--instance-name" && $1 == id }
    }

    static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        // a zombie child is dead too
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")"), stat.index(close, offsetBy: 2) < stat.endIndex {
            return stat[stat.index(close, offsetBy: 2)] != "Z"
        }
        return true
    }

    private func watch(adopt: InstanceRecord?) async {
        var backoff = 0.25
        if let a = adopt, Self.isInstance(a.pid, id: a.id), await ping(port: a.port) {
            lock.withLock { pid = a.pid; port = a.port; state = "running" }
            await pool.upsert(id: id, port: a.port, pid: a.pid, capacity: plan.capacity, healthy: true)
            logger.info("\(id): adopted running process \(a.pid) on port \(a.port)")
        }
        while !Task.isCancelled && !lock.withLock({ stopping }) {
            if lock.withLock({ pid }) == 0 || !Self.alive(lock.withLock { pid }) {
                do {
                    try await spawn()
                } catch {
                    logger.error("\(id): could not start: \(error)")
                    appendLog("[controller] could not start: \(error)\n")
                    lock.withLock { state = "failed"; restarts += 1 }
                    try? await Task.sleep(for: .seconds(backoff))
                    backoff = min(backoff * 2, 8)
                    continue
                }
            }
            // healthy: watch until it dies or stops answering
            let since = ContinuousClock.now
            var misses = 0
            while !Task.isCancelled && !lock.withLock({ stopping }) {
                try? await Task.sleep(for: .milliseconds(500))
                let (p, port) = lock.withLock { (pid, self.port) }
                rotateLog()
                if !Self.alive(p) { break }
                if await ping(port: port) { misses = 0 } else { misses += 1 }
                if misses >= 6 { break }  // 3 s without an answer
                if ContinuousClock.now - since > .seconds(30) { backoff = 0.25 }
            }
            if Task.isCancelled || lock.withLock({ stopping }) { break }
            let p = lock.withLock { pid }
            await pool.setHealthy(id, false)
            let why = Self.alive(p) ? "stopped answering /internal/ping" : "exited"
            if Self.alive(p) { kill(p, SIGKILL) }
            logger.warning("\(id): process \(p) \(why); restarting in \(backoff) s")
            appendLog("[controller] process \(p) \(why); restarting in \(backoff) s\n")
            lock.withLock { state = "restarting"; restarts += 1; pid = 0 }
            try? await Task.sleep(for: .seconds(backoff))
            backoff = min(backoff * 2, 8)
        }
    }

    private func spawn() async throws {
        try FileManager.default.createDirectory(at: runDir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: logFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        let portFile = runDir.appendingPathComponent("\(id).port")
        try? FileManager.default.removeItem(at: portFile)
        let fd = open(logFile.path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { throw ServiceError(500, "cannot open the log \(logFile.path)") }
        let out = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: plan.executable)
        p.arguments = plan.arguments + ["--port", "0", "--port-file", portFile.path, "--instance-name", id]
        p.environment = plan.environment
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        lock.withLock { state = "starting" }
        appendLog("[controller] starting \(id): \(plan.executable) \(p.arguments!.joined(separator: " "))\n")
        try p.run()
        try? out.close()
        let pid = p.processIdentifier
        lock.withLock { process = p; self.pid = pid }
        let deadline = ContinuousClock.now + .seconds(120)
        var port = 0
        do {
            while ContinuousClock.now < deadline {
                if let s = try? String(contentsOf: portFile, encoding: .utf8), let n = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0 {
                    port = n
                    break
                }
                guard p.isRunning else { throw ServiceError(500, "\(id) exited with status \(p.terminationStatus) while starting (see its log)") }
                try await Task.sleep(for: .milliseconds(50))
            }
            guard port > 0 else { throw ServiceError(500, "\(id) did not start listening within 120 s") }
            guard !lock.withLock({ stopping }) else { throw CancellationError() }
        } catch {
            // never leave a half-started child behind (a timeout, or a stop while it started)
            kill(pid, SIGKILL)
            throw error
        }
        lock.withLock { self.port = port; state = "running" }
        try? registry.putInstance(InstanceRecord(service: service, id: id, pid: pid, port: port, started: Date()))
        await pool.upsert(id: id, port: port, pid: pid, capacity: plan.capacity, healthy: true)
        logger.info("\(id): process \(pid) listening on 127.0.0.1:\(port)")
    }

    func ping(port: Int) async -> Bool {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/internal/ping")
        request.method = .GET
        guard let r = try? await HTTPClient.shared.execute(request, timeout: .milliseconds(1500)) else { return false }
        _ = try? await r.body.collect(upTo: 1 << 16)
        return r.status.code == 200
    }

    func appendLog(_ line: String) {
        let fd = open(logFile.path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { return }
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    /// copy-and-truncate rotation: `<log>.1` holds the previous part
    private func rotateLog() {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: logFile.path)[.size] as? NSNumber)?.intValue,
              size > logLimit else { return }
        let old = logFile.appendingPathExtension("1")
        try? FileManager.default.removeItem(at: old)
        try? FileManager.default.copyItem(at: logFile, to: old)
        truncate(logFile.path, 0)
    }
}
