import KeelCore
import Testing

@Suite("RandomSource", .timeLimit(.minutes(2)))
struct RandomSourceTests {
    @Test("produces the SplitMix64 reference sequence")
    func referenceVectors() {
        // Reference outputs of SplitMix64 (Steele, Lea and Flood), computed independently.
        let zero = RandomSource(seed: 0)
        #expect(
            [zero.next(), zero.next(), zero.next()] == [
                0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F,
            ]
        )
        let answer = RandomSource(seed: 42)
        #expect(
            [answer.next(), answer.next(), answer.next()] == [
                0xBDD7_3226_2FEB_6E95, 0x28EF_E333_B266_F103, 0x4752_6757_130F_9F52,
            ]
        )
    }

    @Test("three draws at once are the next three of the sequence", arguments: [0, 1, 42, UInt64.max])
    func threeAtOnce(seed: UInt64) {
        let one = RandomSource(seed: seed)
        let three = RandomSource(seed: seed)
        for _ in 0..<10 {
            let (a, b, c) = three.nextThree()
            #expect([a, b, c] == [one.next(), one.next(), one.next()])
            #expect(three.next() == one.next())
        }
    }

    @Test("equal seeds give equal sequences", arguments: [0, 1, 42, UInt64.max])
    func equalSeedsAreDeterministic(seed: UInt64) {
        let first = RandomSource(seed: seed)
        let second = RandomSource(seed: seed)
        #expect(first.seed == seed)
        let a = (0..<100).map { _ in first.next() }
        let b = (0..<100).map { _ in second.next() }
        #expect(a == b)
        #expect(Set(a).count == 100, "SplitMix64 repeated a value within 100 draws")
    }

    @Test("different seeds give different sequences")
    func differentSeedsDiffer() {
        let sequences = (UInt64(0)..<16).map { seed in
            let random = RandomSource(seed: seed)
            return (0..<4).map { _ in random.next() }
        }
        #expect(Set(sequences).count == 16)
    }

    @Test("next(upperBound:) stays in range and reaches every value", arguments: [1, 2, 6, 1000])
    func upperBoundRange(upperBound: Int) {
        let random = RandomSource(seed: 7)
        var seen: Set<Int> = []
        for _ in 0..<(upperBound * 50) {
            let value = random.next(upperBound: upperBound)
            #expect((0..<upperBound).contains(value))
            seen.insert(value)
        }
        #expect(seen.count == upperBound, "not every value below \(upperBound) came up in \(upperBound * 50) draws")
    }

    @Test("next(upperBound:) handles the largest bound")
    func largestUpperBound() {
        let random = RandomSource(seed: 99)
        for _ in 0..<1000 {
            let value = random.next(upperBound: .max)
            #expect(value >= 0 && value < .max)
        }
    }

    @Test("next(upperBound:) is deterministic for a seed")
    func upperBoundDeterministic() {
        let first = RandomSource(seed: 5)
        let second = RandomSource(seed: 5)
        #expect((0..<50).map { _ in first.next(upperBound: 10) } == (0..<50).map { _ in second.next(upperBound: 10) })
    }

    @Test("nextUnitDouble is in 0..<1 and uses the whole interval")
    func unitDouble() {
        let random = RandomSource(seed: 3)
        let values = (0..<1000).map { _ in random.nextUnitDouble() }
        #expect(values.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(values.contains { $0 < 0.1 })
        #expect(values.contains { $0 > 0.9 })
    }

    @Test("the Generator view draws from the same sequence")
    func generatorView() {
        let viaGenerator = RandomSource(seed: 11)
        let direct = RandomSource(seed: 11)
        var generator = RandomSource.Generator(source: viaGenerator)
        #expect(generator.next() == direct.next())
        #expect(viaGenerator.next() == direct.next(), "the generator did not advance its source")

        var first = RandomSource.Generator(source: RandomSource(seed: 12))
        var second = RandomSource.Generator(source: RandomSource(seed: 12))
        #expect(Array(0..<20).shuffled(using: &first) == Array(0..<20).shuffled(using: &second))
    }

    @Test("concurrent draws never repeat or lose a value of the sequence")
    func concurrentDraws() async {
        let shared = RandomSource(seed: 2024)
        let expected = RandomSource(seed: 2024)
        let sequential = Set((0..<1000).map { _ in expected.next() })

        let drawn = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<10 {
                group.addTask { (0..<100).map { _ in shared.next() } }
            }
            return await group.reduce(into: [UInt64]()) { $0 += $1 }
        }
        #expect(drawn.count == 1000)
        #expect(Set(drawn) == sequential)
    }
}
