import KeelCore
import Testing

/// The one retry schedule: pure, capped, and with jitter drawn only from the source it is given.
@Suite("Backoff")
struct BackoffTests {
    @Test func backoffSchedulesAreExact() {
        let random = RandomSource(seed: 1)
        #expect(
            Array(Backoff.constant(.seconds(1)).makeDelays(using: random).prefix(3)) == [
                .seconds(1), .seconds(1), .seconds(1),
            ]
        )
        #expect(
            Array(
                Backoff.linear(initial: .milliseconds(100), increment: .milliseconds(50), maximum: .milliseconds(220))
                    .makeDelays(using: random).prefix(5)
            ) == [.milliseconds(100), .milliseconds(150), .milliseconds(200), .milliseconds(220), .milliseconds(220)]
        )
        #expect(
            Array(
                Backoff.exponential(
                    initial: .milliseconds(100),
                    multiplier: 2,
                    maximum: .milliseconds(700),
                    jitter: false
                )
                .makeDelays(using: random).prefix(5)
            ) == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(700), .milliseconds(700)]
        )
    }

    @Test func jitteredSchedulesFollowTheirFormulasWithASeededSource() {
        let draws = RandomSource(seed: 99)
        let full = Array(
            Backoff.exponential(initial: .milliseconds(100), multiplier: 2, maximum: .milliseconds(700))
                .makeDelays(using: RandomSource(seed: 99)).prefix(5)
        )
        let caps: [Duration] = [
            .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(700), .milliseconds(700),
        ]
        #expect(full == caps.map { $0 * draws.nextUnitDouble() })

        let decorrelatedDraws = RandomSource(seed: 5)
        var previous = Duration.milliseconds(50)
        var expected: [Duration] = []
        for _ in 0..<8 {
            let upper = previous * 3
            previous = min(
                .milliseconds(900),
                .milliseconds(50) + (upper - .milliseconds(50)) * decorrelatedDraws.nextUnitDouble()
            )
            expected.append(previous)
        }
        let decorrelated = Array(
            Backoff.decorrelatedJitter(base: .milliseconds(50), maximum: .milliseconds(900))
                .makeDelays(using: RandomSource(seed: 5)).prefix(8)
        )
        #expect(decorrelated == expected)
        #expect(decorrelated.allSatisfy { $0 >= .milliseconds(50) && $0 <= .milliseconds(900) })
        // The same seed gives the same schedule.
        #expect(
            decorrelated
                == Array(
                    Backoff.decorrelatedJitter(base: .milliseconds(50), maximum: .milliseconds(900))
                        .makeDelays(using: RandomSource(seed: 5)).prefix(8)
                )
        )
    }

    @Test func immediateIsAConstantZero() {
        #expect(Backoff.immediate == .constant(.zero))
        #expect(Array(Backoff.immediate.makeDelays(using: RandomSource(seed: 1)).prefix(3)) == [.zero, .zero, .zero])
        #expect("\(Backoff.immediate)" == "constant(0.0 seconds)")
    }

    @Test func schedulesWithoutJitterDrawNothing() {
        let random = RandomSource(seed: 3)
        var delays = Backoff.exponential(initial: .milliseconds(10), maximum: .seconds(1), jitter: false)
            .makeDelays(using: random)
        _ = delays.next()
        _ = delays.next()
        #expect(random.next() == RandomSource(seed: 3).next(), "the source was not drawn from")
    }
}
