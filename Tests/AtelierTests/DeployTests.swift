import AtelierDeploy
import AtelierService
import AtelierStorage
import Foundation
import Testing

/// AWS's published SigV4 examples for S3 ("Signature Calculations for the Authorization Header:
/// Transferring Payload in a Single Chunk"), which every S3 server checks the same way.
@Suite struct SigV4Tests {
    let signer = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
    let date = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z

    func signature(_ h: [String: String]) -> String {
        String(h["Authorization"]!.split(separator: "=").last!)
    }

    @Test func getObjectWithRangeMatchesAWSsExampleSignature() {
        let h = signer.sign(method: "GET", path: "/test.txt", query: [],
                            headers: ["host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9"],
                            payloadHash: SigV4Signer.emptyPayloadHash, date: date)
        #expect(signature(h) == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(h["Authorization"]!.contains("Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"))
    }

    @Test func putObjectWithReservedCharacterInKeyMatchesAWSsExampleSignature() {
        let body = Data("Welcome to Amazon S3.".utf8)
        #expect(SigV4Signer.payloadHash(body) == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let h = signer.sign(method: "PUT", path: "/test$file.text", query: [],
                            headers: ["host": "examplebucket.s3.amazonaws.com", "date": "Fri, 24 May 2013 00:00:00 GMT",
                                      "x-amz-storage-class": "REDUCED_REDUNDANCY"],
                            payloadHash: SigV4Signer.payloadHash(body), date: date)
        #expect(signature(h) == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func listObjectsQueryIsSortedAndEncodedAsAWSsExample() {
        let h = signer.sign(method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")],
                            headers: ["host": "examplebucket.s3.amazonaws.com"], payloadHash: SigV4Signer.emptyPayloadHash, date: date)
        #expect(signature(h) == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func bucketPathsParseOSSURLsAndJoinKeysWithoutDoubleSlashes() {
        let b = BucketPath("oss://examplebucket/aohai-singapore/")!
        #expect(b.bucket == "examplebucket" && b.prefix == "aohai-singapore")
        #expect(b.key("outputs/a.png") == "aohai-singapore/outputs/a.png")
        #expect(BucketPath("oss://examplebucket")!.key("/models/x") == "models/x")
        #expect(BucketPath("http://examplebucket/x") == nil)
        #expect(BucketPath("oss://Bad_Bucket/x") == nil)
    }
}

@Suite struct ServiceSpecTests {
    static let j1 = try! Data(contentsOf: Fixtures.root.appendingPathComponent("deploy/j1.json"))
    static let j2 = try! Data(contentsOf: Fixtures.root.appendingPathComponent("deploy/j2.json"))

    /// J1 with `edit` applied to its JSON object.
    func j1(_ edit: (inout [String: Any]) -> Void) -> Data {
        var o = try! JSONSerialization.jsonObject(with: Self.j1) as! [String: Any]
        edit(&o)
        return try! JSONSerialization.data(withJSONObject: o)
    }

    func errorPaths(_ data: Data) -> [String] {
        do {
            _ = try ServiceSpec(json: data)
            return []
        } catch let e as SpecError {
            return e.diagnostics.filter { $0.severity == .error }.map(\.path)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    @Test func seedStandardExampleDecodesVerbatimWithTheSharedMountPathFlagged() throws {
        let spec = try ServiceSpec(json: Self.j1)
        #expect(spec.name == "sd_v32" && spec.edition == .standard && spec.instances == 1 && spec.enableWebservice && !spec.async)
        #expect(spec.port == 8000 && spec.script.value("--port") == "8000" && spec.script.program == "./webui.sh")
        #expect(spec.containerDataDir == "/code/stable-diffusion-webui/data")
        #expect(spec.mounts.count == 1)
        #expect(spec.mounts.first?.source == .oss(bucket: "examplebucket", prefix: "data-oss"))
        #expect(spec.mounts.first?.mountPath == "/code/stable-diffusion-webui/data" && spec.mounts.first?.readOnly == false)
        #expect(spec.diagnostics.contains { $0.severity == .warning && $0.path == "storage[1].mount_path" })
        // lossless: the kept document is the file's JSON, null instances included
        let original = JSONValue(any: try JSONSerialization.jsonObject(with: Self.j1))
        #expect(spec.raw == original)
        #expect(try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(spec.raw)) == original)
    }

    @Test func seedAPIExampleIsAnAsyncServiceWithOneWorkerThreadAndNoRedelivery() throws {
        let spec = try ServiceSpec(json: Self.j2)
        #expect(spec.name == "sd_async" && spec.edition == .api && spec.async && !spec.enableWebservice)
        #expect(spec.workerThreads == 1 && spec.maxDelivery == 1)
        #expect(spec.script.has("--nowebui") && spec.script.has("--time-log") && !spec.script.has("--filebrowser"))
        #expect(spec.mounts.first?.source == .oss(bucket: "examplebucket", prefix: "aohai-singapore"))
        #expect(!spec.diagnostics.contains { $0.severity == .error })
    }

    @Test func eachBadFieldIsNamedByItsJSONPath() {
        #expect(errorPaths(Data("{\"metadata\": ".utf8)) == ["$"])
        #expect(errorPaths(Data("[1]".utf8)) == ["$"])
        #expect(errorPaths(j1 { o in var m = o["metadata"] as! [String: Any]; m["instance"] = "two"; o["metadata"] = m }) == ["metadata.instance"])
        #expect(errorPaths(j1 { o in var m = o["metadata"] as! [String: Any]; m["instance"] = 0; o["metadata"] = m }).contains("metadata.instance"))
        #expect(errorPaths(j1 { o in var m = o["metadata"] as! [String: Any]; m["instance"] = 2; o["metadata"] = m }) == ["metadata.instance"])
        #expect(errorPaths(j1 { o in var m = o["metadata"] as! [String: Any]; m.removeValue(forKey: "name"); o["metadata"] = m }) == ["metadata.name"])
        #expect(errorPaths(j1 { o in var c = (o["containers"] as! [[String: Any]]); c[0].removeValue(forKey: "image"); o["containers"] = c }) == ["containers[0].image"])
        #expect(errorPaths(j1 { o in var c = (o["containers"] as! [[String: Any]]); c[0].removeValue(forKey: "script"); o["containers"] = c }) == ["containers[0].script"])
        #expect(errorPaths(j1 { o in var c = (o["containers"] as! [[String: Any]]); c[0]["port"] = 9000; o["containers"] = c }) == ["containers[0].port"])
        #expect(errorPaths(j1 { o in var s = (o["storage"] as! [[String: Any]]); s[0]["mount_path"] = "/etc"; o["storage"] = s }) == ["storage[0].mount_path"])
        #expect(errorPaths(j1 { o in var s = (o["storage"] as! [[String: Any]]); s[1]["nfs"] = ["path": "/"]; o["storage"] = s }) == ["storage[1].nfs.server"])
        #expect(errorPaths(j1 { o in var s = (o["storage"] as! [[String: Any]]); s[0]["oss"] = ["path": "examplebucket/x"]; o["storage"] = s }) == ["storage[0].oss.path"])
        #expect(errorPaths(j1 { o in var c = (o["containers"] as! [[String: Any]]); c[0]["script"] = "./webui.sh --port 8000; rm -rf /"; o["containers"] = c }) == ["containers[0].script"])
    }

    @Test func unknownFieldsAreWarningsNotErrors() throws {
        let spec = try ServiceSpec(json: j1 { o in o["colour"] = "blue"; var m = o["metadata"] as! [String: Any]; m["shiny"] = true; o["metadata"] = m })
        #expect(spec.diagnostics.contains { $0.severity == .warning && $0.path == "colour" })
        #expect(spec.diagnostics.contains { $0.severity == .warning && $0.path == "metadata.shiny" })
    }

    @Test func scriptFlagsReadTheSameWithSpaceOrEqualsAndQuotesAreShellWords() throws {
        let a = try WebUIScript(parsing: "./webui.sh --data-dir /code/stable-diffusion-webui/data --listen")
        let b = try WebUIScript(parsing: "./webui.sh --data-dir=/code/stable-diffusion-webui/data --listen")
        #expect(a == b && a.value("--data-dir") == "/code/stable-diffusion-webui/data" && a.has("--listen"))
        let q = try WebUIScript(parsing: #"./webui.sh --always-hide-tabs "train, extensions" --api-auth 'a:b c'"#)
        #expect(q.value("--always-hide-tabs") == "train, extensions" && q.value("--api-auth") == "a:b c")
        #expect(throws: WebUIScript.ParseError.self) { try WebUIScript(parsing: "./webui.sh --port $(id)") }
        #expect(throws: WebUIScript.ParseError.self) { try WebUIScript(parsing: "./webui.sh --listen=yes") }
        #expect(throws: WebUIScript.ParseError.self) { try WebUIScript(parsing: "./webui.sh --port") }
    }
}
