import Foundation
import HTTPTypes
import Keel
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
        #expect(configuration.storage == .inMemory)
        #expect(!configuration.baselineRoutes)
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
        #expect(configuration.storage == .directory("/tmp/shop"))
        #expect(configuration.drainTimeout == .milliseconds(250))
        #expect(configuration.logLevel == .warning)
        #expect(configuration.paymentsConcurrency == 8)
    }

    @Test(
        "bad flags are refused",
        arguments: [
            ["--port", "70000"], ["--nonsense"], ["--port"], ["--max-body-bytes", "0"], ["stray"],
            ["--payments-concurrency", "0"],
        ]
    )
    func refused(_ arguments: [String]) {
        #expect(throws: ShopServer.ConfigurationError.self) {
            try ShopServer.Configuration(arguments: arguments, environment: [:])
        }
    }
}
