import Foundation
import Logging
import ShopServer

/// `shop-server`: the shop's services behind an HTTP API, until SIGTERM or SIGINT.
///
/// Flags and environment variables: see `ShopServer.Configuration`; `--help` lists them.
@main
enum ShopServerMain {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.contains("--help") || arguments.contains("-h") {
            print(
                """
                usage: shop-server [--host 127.0.0.1] [--port 8080] [--max-body-bytes 65536]
                                   [--storage memory|DIRECTORY] [--drain-timeout-ms 10000]
                                   [--request-timeout-ms 5000] [--stock UNITS] [--baseline]
                                   [--payments-concurrency 2]
                                   [--log-level trace|debug|info|notice|warning|error|critical]
                                   [--storage postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME]]
                                   [--services user,catalog,inventory,payment,shipping,order,notification]
                                   [--peer HOST:PORT] [--grpc-port PORT]
                Each flag may also come from the environment: SHOP_HOST, SHOP_PORT, SHOP_MAX_BODY_BYTES,
                SHOP_STORAGE, SHOP_DRAIN_TIMEOUT_MS, SHOP_REQUEST_TIMEOUT_MS, SHOP_STOCK, SHOP_BASELINE,
                SHOP_PAYMENTS_CONCURRENCY, SHOP_LOG_LEVEL, SHOP_SERVICES, SHOP_PEER, SHOP_GRPC_PORT.
                Once it serves, it prints "http HOST:PORT" (and "grpc HOST:PORT") on standard output.
                """
            )
            return
        }
        let configuration: ShopServer.Configuration
        do {
            configuration = try ShopServer.Configuration(
                arguments: arguments,
                environment: ProcessInfo.processInfo.environment
            )
        } catch {
            FileHandle.standardError.write(Data("shop-server: \(error)\n".utf8))
            exit(2)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "shop-server")
        do {
            let server = try await ShopServer(configuration: configuration, logger: logger)
            logger.notice(
                "starting",
                metadata: [
                    "address": "\(configuration.host):\(configuration.port)",
                    "storage": "\(configuration.storage)",
                    "baseline": "\(configuration.baselineRoutes)",
                ]
            )
            try await withThrowingTaskGroup { group in
                group.addTask { try await server.run() }
                // What a supervisor (or a test) reads to reach it, ports chosen for 0 included.
                if let port = await server.waitUntilRunning() {
                    var lines = "http \(configuration.host):\(port)\n"
                    if let grpc = try await server.grpcAddress { lines += "grpc \(grpc)\n" }
                    FileHandle.standardOutput.write(Data(lines.utf8))
                }
                try await group.next()
            }
            logger.notice("stopped")
        } catch {
            logger.critical("shop-server failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }
}
