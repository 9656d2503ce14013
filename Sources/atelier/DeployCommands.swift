import ArgumentParser
import AsyncHTTPClient
import AtelierDeploy
import AtelierService
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// `atelier controller`: the control plane with the gateway (see `Controller`).
struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "controller",
        abstract: "Run the control plane and gateway: services from EAS JSON specs, their instances, /api/predict/<service>.")

    @Option(help: "The controller's data dir (registry, services' local data, logs, admin token).") var dataDir = "controller"
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one).") var port = 8080
    @Option(help: "Config file (default DATA/config.json): NAS servers → directories, the S3 store, mount roots.") var config: String?
    @Option(help: "Write the bound port to this file once listening.") var portFile: String?

    func run() async throws {
        var logger = Logger(label: "atelier.controller")
        logger.logLevel = .info
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        let dir = URL(fileURLWithPath: dataDir).standardizedFileURL
        let conf: ControllerConfig
        do { conf = try ControllerConfig.load(config.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("config.json")) } catch {
            throw ValidationError("\(error)")
        }
        let controller = try Controller(dir: dir, config: conf, logger: logger)
        let host = self.host, portFile = self.portFile
        try await controller.run(host: host, port: port) { bound in
            let url = "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(bound)"
            try? url.write(to: dir.appendingPathComponent("controller.url"), atomically: true, encoding: .utf8)
            if let portFile { try? String(bound).write(toFile: portFile, atomically: true, encoding: .utf8) }
            print("Atelier controller listening on \(url) (admin token in \(dir.path)/admin-token)")
            fflush(stdout)
        }
    }
}

/// Where the controller is: `--controller URL` + `--admin-token`, or its data dir's files.
struct ControllerAddress: ParsableArguments {
    @Option(help: "The controller's data dir (its controller.url and admin-token files; or ATELIER_CONTROLLER_DIR).") var controllerDir: String?
    @Option(help: "The controller's URL (default: from the controller dir).") var controller: String?
    @Option(help: "The controller's admin token (default: from the controller dir).") var adminToken: String?

    func resolve() throws -> (url: String, token: String) {
        let dir = controllerDir ?? ProcessInfo.processInfo.environment["ATELIER_CONTROLLER_DIR"] ?? "controller"
        func read(_ name: String) -> String? {
            (try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let url = controller ?? read("controller.url") else {
            throw ValidationError("no controller found: start `atelier controller --data-dir \(dir)` or pass --controller URL")
        }
        guard let token = adminToken ?? read("admin-token") else { throw ValidationError("no admin token: pass --admin-token or --controller-dir") }
        return (url, token)
    }

    /// One call to the controller's REST API; a 4xx/5xx becomes an error with its message.
    func call(_ method: HTTPMethod, _ path: String, body: Data? = nil) async throws -> JSONValue {
        let (url, token) = try resolve()
        var request = HTTPClientRequest(url: url + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: .minutes(30)) } catch {
            throw ValidationError("cannot reach the controller at \(url): \(error)")
        }
        let data = Data(buffer: try await response.body.collect(upTo: 64 << 20))
        let json = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])).map(JSONValue.init(any:)) ?? .string(String(decoding: data, as: UTF8.self))
        guard response.status.code < 400 else { throw ControllerRefusal(status: Int(response.status.code), body: json) }
        return json
    }
}

/// The controller said no: its message, and each spec error with its JSON path.
struct ControllerRefusal: Error, CustomStringConvertible {
    let status: Int
    let body: JSONValue
    var description: String {
        guard case .object(let o) = body else { return "HTTP \(status): \(body)" }
        if case .array(let errors)? = o["errors"], !errors.isEmpty {
            return errors.map { e -> String in
                guard case .object(let x) = e else { return "\(e)" }
                return "error: \(x["field"]?.string ?? ""): \(x["message"]?.string ?? "")"
            }.joined(separator: "\n")
        }
        return "HTTP \(status): \(o["detail"]?.string ?? "\(body)")"
    }
}

/// Prints a service the way the console's "call info" does.
func printService(_ s: JSONValue, json: Bool) {
    if json {
        print(String(decoding: s.prettyData(), as: UTF8.self))
        return
    }
    guard case .object(let o) = s else { return }
    print("name:      \(o["name"]?.string ?? "")")
    print("edition:   \(o["edition"]?.string ?? "")")
    print("status:    \(o["status"]?.string ?? "") (\(o["running_instances"]?.int ?? 0)/\(o["instances"]?.int ?? 0) instances running)")
    if case .object(let e)? = o["endpoints"] {
        for k in e.keys.sorted() { print("endpoint:  \(k.padding(toLength: 11, withPad: " ", startingAt: 0)) \(e[k]?.string ?? "")") }
    }
    print("token:     \(o["token"]?.string ?? "")")
    print("storage:   \(o["storage"]?.string ?? "") mounted at \(o["mount_path"]?.string ?? "")")
    if case .array(let list)? = o["instance_list"] {
        for i in list {
            guard case .object(let x) = i else { continue }
            print("instance:  \(x["id"]?.string ?? "") pid \(x["pid"]?.int ?? 0) port \(x["port"]?.int ?? 0) \(x["state"]?.string ?? "") (restarts \(x["restarts"]?.int ?? 0), jobs \(x["jobs_served"]?.int ?? 0))")
        }
    }
    if case .array(let d)? = o["diagnostics"] { for x in d { print(x.string ?? "") } }
}

extension JSONValue {
    func prettyData() -> Data {
        (try? JSONSerialization.data(withJSONObject: any, options: [.prettyPrinted, .sortedKeys])) ?? data()
    }
}

/// `atelier deploy SPEC.json`: creates a service from an EAS JSON spec and waits until it runs.
struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Deploy a service from an EAS JSON spec (standard or API edition).")
    @Argument(help: "The JSON spec (as pasted into the cloud console's JSON deployment).") var spec: String
    @OptionGroup var address: ControllerAddress
    @Flag(help: "Return once the service is recorded, without waiting for its instances.") var noWait = false
    @Flag(help: "Print the service as JSON.") var json = false

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: spec) else { throw ValidationError("cannot read \(spec)") }
        let created = try await address.call(.POST, "/api/services", body: data)
        guard case .object(let o) = created, let name = o["name"]?.string else { throw ValidationError("unexpected answer: \(created)") }
        var current = created
        if !noWait {
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                current = try await address.call(.GET, "/api/services/\(name)")
                if case .object(let c) = current, ["Running", "Failed"].contains(c["status"]?.string ?? "") { break }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        printService(current, json: json)
        if case .object(let c) = current, c["status"]?.string == "Failed" { throw ExitCode(1) }
    }
}

/// `atelier services …`: the console's service operations.
struct Services: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List, describe and operate deployed services.",
        subcommands: [List.self, Describe.self, Logs.self, Start.self, Stop.self, Restart.self, Scale.self, Update.self, Delete.self, RotateToken.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var address: ControllerAddress
        @Flag var json = false
        func run() async throws {
            let all = try await address.call(.GET, "/api/services")
            if json { print(String(decoding: all.prettyData(), as: UTF8.self)); return }
            guard case .object(let o) = all, case .array(let list)? = o["services"] else { return }
            print("NAME".padding(toLength: 24, withPad: " ", startingAt: 0) + "EDITION   STATUS    INSTANCES  ENDPOINT")
            func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: n, withPad: " ", startingAt: 0) }
            for s in list {
                guard case .object(let x) = s else { continue }
                let counts = "\(x["running_instances"]?.int ?? 0)/\(x["instances"]?.int ?? 0)"
                var line = pad(x["name"]?.string ?? "", 24)
                line += pad(x["edition"]?.string ?? "", 10)
                line += pad(x["status"]?.string ?? "", 10)
                line += pad(counts, 11)
                line += x["endpoint"]?.string ?? ""
                print(line)
            }
        }
    }

    struct Describe: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        @Flag var json = false
        func run() async throws { printService(try await address.call(.GET, "/api/services/\(name)"), json: json) }
    }

    struct Logs: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        @Option(help: "Only this instance.") var instance: String?
        @Option(help: "Lines per instance.") var tail = 200
        @Flag(help: "Keep printing new lines.") var follow = false
        func run() async throws {
            var offsets: [String: Int] = [:]
            let filter = instance.map { "&instance=\($0)" } ?? ""
            let first = try await address.call(.GET, "/api/services/\(name)/logs?tail=\(tail)\(filter)")
            for (id, text, size, _) in Self.parts(first) {
                print("==> \(id) <==")
                print(text)
                offsets[id] = size
            }
            while follow {
                try await Task.sleep(for: .milliseconds(500))
                // one instance filter per call, so that previous_offset is that instance's
                for (id, before) in offsets.isEmpty ? [("", 0)] : offsets.map({ ($0.key, $0.value) }) {
                    let only = id.isEmpty ? filter : "&instance=\(id)"
                    let next = try await address.call(.GET, "/api/services/\(name)/logs?offset=0&previous_offset=\(before)\(only)")
                    for (iid, text, size, previous) in Self.parts(next) {
                        var seen = offsets[iid] ?? 0
                        if seen > size {
                            // rotated (copied to .1 and truncated): the rest of the old part, then all of the new
                            print(previous, terminator: "")
                            seen = 0
                        }
                        let data = Data(text.utf8)
                        if size > seen, data.count >= size { print(String(decoding: data[seen...], as: UTF8.self), terminator: "") }
                        offsets[iid] = size
                    }
                }
                fflush(stdout)
            }
        }
        static func parts(_ v: JSONValue) -> [(String, String, Int, String)] {
            guard case .object(let o) = v, case .array(let list)? = o["logs"] else { return [] }
            return list.compactMap { e in
                guard case .object(let x) = e else { return nil }
                return (x["instance"]?.string ?? "", x["text"]?.string ?? "", x["size"]?.int ?? 0, x["previous"]?.string ?? "")
            }
        }
    }

    struct Start: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        func run() async throws { printService(try await address.call(.POST, "/api/services/\(name)/start"), json: false) }
    }

    struct Stop: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        func run() async throws { printService(try await address.call(.POST, "/api/services/\(name)/stop"), json: false) }
    }

    struct Restart: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        func run() async throws { printService(try await address.call(.POST, "/api/services/\(name)/restart"), json: false) }
    }

    struct Scale: AsyncParsableCommand {
        @Argument var name: String
        @Argument(help: "Instances.") var instances: Int
        @OptionGroup var address: ControllerAddress
        func run() async throws {
            let body = JSONValue.object(["instances": .int(instances)]).data()
            printService(try await address.call(.POST, "/api/services/\(name)/scale", body: body), json: false)
        }
    }

    struct Update: AsyncParsableCommand {
        @Argument var name: String
        @Argument var spec: String
        @OptionGroup var address: ControllerAddress
        func run() async throws {
            guard let data = FileManager.default.contents(atPath: spec) else { throw ValidationError("cannot read \(spec)") }
            printService(try await address.call(.PUT, "/api/services/\(name)", body: data), json: false)
        }
    }

    struct Delete: AsyncParsableCommand {
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        func run() async throws {
            _ = try await address.call(.DELETE, "/api/services/\(name)")
            print("deleted \(name)")
        }
    }

    struct RotateToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rotate-token")
        @Argument var name: String
        @OptionGroup var address: ControllerAddress
        func run() async throws { printService(try await address.call(.POST, "/api/services/\(name)/rotate-token"), json: false) }
    }
}
