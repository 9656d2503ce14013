import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import AtelierQueue
import AtelierService
import NIOWebSocket
@_spi(WSInternal) import WSCore

/// HTTP/1.1 with WebSocket upgrades for queue watches. Unlike Hummingbird's own upgrade
/// channel, a refused upgrade is not answered with a bare 400 but with the real status (401,
/// 404, 400 naming `_window_`, …) and the queue's JSON error body, which the SDK shows in its
/// handshake exception. (NIO does not hand a refused upgrade request on to the HTTP pipeline,
/// so the refusal is written here.)
struct QueueWebSocketChannel: ServerChildChannel, HTTPChannelHandler {
    typealias Handler = @Sendable (NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, Logger) async -> Void

    enum UpgradeResult: Sendable {
        case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, Handler, Logger)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, QueueError)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    struct WatchContext: WebSocketContext {
        let logger: Logger
    }

    let responder: HTTPChannelHandler.Responder
    let configuration: WebSocketServerConfiguration
    /// the data handler for an upgrade request, or why it is refused
    let handlerFor: @Sendable (HTTPRequest) -> Result<WebSocketDataHandler<WatchContext>, QueueError>

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let chosen = NIOLockedValueBox<Handler?>(nil)
            let refusal = NIOLockedValueBox<QueueError?>(nil)
            let configuration = self.configuration
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: configuration.maxFrameSize,
                shouldUpgrade: { channel, head in
                    let decided = (try? HTTPRequest(head, secure: false, splitCookie: false)).map(handlerFor)
                        ?? .failure(QueueError(400, field: "headers", "malformed upgrade request"))
                    guard case .success(let dataHandler) = decided else {
                        if case .failure(let e) = decided { refusal.withLockedValue { $0 = e } }
                        return channel.eventLoop.makeSucceededFuture(nil)
                    }
                    chosen.withLockedValue {
                        $0 = { asyncChannel, logger in
                            _ = try? await WebSocketHandler.handle(
                                type: .server,
                                configuration: .init(extensions: [], autoPing: configuration.autoPing, closeTimeout: configuration.closeTimeout,
                                                     validateUTF8: configuration.validateUTF8, maxFrameSize: configuration.maxFrameSize),
                                asyncChannel: asyncChannel, context: WatchContext(logger: logger), handler: dataHandler)
                        }
                    }
                    return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        let asyncChannel = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return UpgradeResult.websocket(asyncChannel, chosen.withLockedValue { $0! }, logger)
                    }
                })
            let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        if let e = refusal.withLockedValue({ $0 }) { return UpgradeResult.refused(asyncChannel, e) }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                })
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(upgradeConfiguration: upgradeConfiguration)
            pipeline.enablePipelining = false
            pipeline.enableErrorHandling = false
            pipeline.enableResponseHeaderValidation = false
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            return Value(upgradeResult: negotiated, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http1): await handleHTTP(asyncChannel: http1, logger: logger)
            case .websocket(let asyncChannel, let handler, let logger): await handler(asyncChannel, logger)
            case .refused(let http1, let e):
                logger.info("GET watch refused: \(e)")
                let body = ByteBuffer(data: JSONValue.object(["code": .int(e.status), "field": .string(e.field), "message": .string(e.message)]).data())
                try await http1.executeThenClose { _, outbound in
                    let head = HTTPResponse(status: .init(code: e.status), headerFields: [
                        .connection: "close", .contentType: "application/json", .contentLength: String(body.readableBytes)])
                    try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
                }
            }
        } catch {
            logger.debug("upgrade failed: \(error)")
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 plus queue watches (see `QueueWebSocketChannel`).
    static func http1QueueWatch(configuration: WebSocketServerConfiguration,
                                handlerFor: @escaping @Sendable (HTTPRequest) -> Result<WebSocketDataHandler<QueueWebSocketChannel.WatchContext>, QueueError>) -> HTTPServerBuilder {
        .init { responder in QueueWebSocketChannel(responder: responder, configuration: configuration, handlerFor: handlerFor) }
    }
}

/// One service's queue endpoints (put, get, commit, watch, …) for a front that serves several
/// services: the deploy gateway. Same wire behaviour as `atelier serve --edition api`. With
/// `token` nil the front checks the token itself (it may change: rotate-token).
public struct QueueEndpoints: Sendable {
    let routes: QueueRoutes

    public init(service: QueueService, token: String?, backend: String) {
        routes = QueueRoutes(service: service, token: token, backend: backend, servablePaths: SDAPIRoutes.queueablePaths)
    }

    /// Answers an HTTP queue request under `/api/predict/<service>…` (errors are thrown for the
    /// router's error middleware, in the queue's `{"code", "field", "message"}` shape).
    public func handle(_ request: Request) async throws -> Response { try await routes.handle(request) }
}

/// A Hummingbird application whose HTTP/1.1 channel also accepts queue watches (WebSocket
/// upgrades under `/api/predict/<service>/sink?_watch_=true`), the service picked per request.
public enum QueueAwareApplication {
    public static func make(router: Router<BasicRequestContext>, host: String, port: Int, maxFrameSize: Int, logger: Logger,
                            endpoints: @escaping @Sendable (_ head: HTTPRequest) -> Result<QueueEndpoints, QueueError>,
                            onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let ws = WebSocketServerConfiguration(maxFrameSize: maxFrameSize, autoPing: .enabled(timePeriod: .seconds(60)))
        let server: HTTPServerBuilder = .http1QueueWatch(configuration: ws) { head in
            switch endpoints(head) {
            case .success(let e): return e.routes.watchHandler(for: head)
            case .failure(let error): return .failure(error)
            }
        }
        let onRunning: @Sendable (any Channel) async -> Void = { channel in onListening(channel.localAddress?.port ?? 0) }
        return Application(router: router, server: server,
                           configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "Atelier gateway"),
                           onServerRunning: onRunning, logger: logger)
    }
}
