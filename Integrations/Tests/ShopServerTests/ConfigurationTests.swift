import Foundation
import HTTPTypes
import Keel
import KeelGRPC
import KeelPostgres
import KeelResilience
import Logging
import ShopServer
import ShopServices
import Testing

@Suite("Configuration and error mapping, without a server")
struct ConfigurationTests {
    @Test("defaults: loopback, a fixed port, in memory")
    func defaults() {
        let configuration = ShopServer.Configuration()
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 8080)
        #expect(configuration.storage.isInMemory)
        #expect(!configuration.baselineRoutes)
        #expect(configuration.services == nil && configuration.peer == nil && configuration.grpcPort == nil)
    }

    @Test("flags override the environment, which overrides the defaults")
    func precedence() throws {
        let configuration = try ShopServer.Configuration(
            arguments: [
                "--port", "0", "--max-body-bytes=128", "--baseline", "--storage", "/tmp/shop",
                "--payments-concurrency", "8",
            ],
            environment: ["SHOP_PORT": "9000", "SHOP_DRAIN_TIMEOUT_MS": "250", "SHOP_LOG_LEVEL": "warning"]
        )
        #expect(configuration.port == 0)
        #expect(configuration.maxBodyBytes == 128)
        #expect(configuration.baselineRoutes)
        guard case .directory("/tmp/shop") = configuration.storage else {
            Issue.record("storage is \(configuration.storage)")
            return
        }
        #expect(configuration.drainTimeout == .milliseconds(250))
        #expect(configuration.logLevel == .warning)
        #expect(configuration.paymentsConcurrency == 8)
    }

    @Test("a process that runs part of the shop: its services, its peer, its gRPC port, PostgreSQL storage")
    func split() throws {
        let configuration = try ShopServer.Configuration(
            arguments: [
                "--services", "order,payment,shipping,notification", "--peer", "127.0.0.1:7071", "--grpc-port", "7072",
                "--storage", "postgres://shop:secret@db.internal:5433/shopdb?schema=shop_split",
            ],
            environment: [:]
        )
        #expect(configuration.services == ["order", "payment", "shipping", "notification"])
        #expect(configuration.peer == ServerAddress(host: "127.0.0.1", port: 7071))
        #expect(configuration.grpcPort == 7072)
        guard case .postgres(let store) = configuration.storage else {
            Issue.record("storage is \(configuration.storage)")
            return
        }
        #expect(store.host == "db.internal" && store.port == 5433)
        #expect(store.username == "shop" && store.password == "secret")
        #expect(store.database == "shopdb" && store.schema == "shop_split")
    }

    @Test(
        "bad flags are refused",
        arguments: [
            ["--port", "70000"], ["--nonsense"], ["--port"], ["--max-body-bytes", "0"], ["stray"],
            ["--payments-concurrency", "0"], ["--services", "user,warehouse"], ["--peer", "localhost"],
            ["--peer", "localhost:0"], ["--grpc-port", "-1"], ["--storage", "postgres://localhost/shop"],
        ]
    )
    func refused(_ arguments: [String]) {
        #expect(throws: ShopServer.ConfigurationError.self) {
            try ShopServer.Configuration(arguments: arguments, environment: [:])
        }
    }
}
