import AtelierDiffusion
import AtelierImaging
import AtelierModels
import Foundation
import Testing

@Suite(.serialized) struct PipelineTests {
    func request(seed: Int64, batch: Int = 1, sampler: Sampler = .eulerA, size: Int = 128) -> GenerationRequest {
        var r = GenerationRequest()
        r.prompt = "a red cube"
        r.negativePrompt = "blurry"
        r.seed = seed
        r.steps = 6
        r.sampler = sampler
        r.width = size
        r.height = size
        r.batchSize = batch
        r.randnSource = .cpu
        return r
    }

    @Test func imageIOfABatchEqualsASingleRunAtSeedPlusI() throws {
        let batch = try Fixtures.pipeline.txt2img(request(seed: 100, batch: 2))
        #expect(batch.map(\.seed) == [100, 101])
        for i in 0..<2 {
            let single = try Fixtures.pipeline.txt2img(request(seed: 100 + Int64(i)))[0]
            #expect(psnr(batch[i].rgb, single.rgb) >= 40)
            #expect(batch[i].infotext == single.infotext)
        }
        #expect(batch[0].rgb != batch[1].rgb)
    }

    /// A1111 gives the SDE samplers one Brownian tree per image, seeded with that image's seed:
    /// image i of a batch is the single picture of seed + i. (Not so for DPM adaptive: k-diffusion
    /// measures one error norm over the whole batch, so its step sizes depend on the batch, as in A1111.)
    @Test(arguments: [Sampler.dpmppSDE, .dpmpp2mSDE, .dpmpp3mSDE])
    func sdeSamplerBatchImagesEqualSingleRunsOfTheirSeeds(_ sampler: Sampler) throws {
        let batch = try Fixtures.pipeline.txt2img(request(seed: 300, batch: 2, sampler: sampler))
        for i in 0..<2 {
            let single = try Fixtures.pipeline.txt2img(request(seed: 300 + Int64(i), sampler: sampler))[0]
            #expect(psnr(batch[i].rgb, single.rgb) >= 40, "image \(i)")
        }
        #expect(batch[0].rgb != batch[1].rgb)
    }

    @Test func infotextFollowsA1111AndSurvivesAPNGRoundTrip() throws {
        var r = request(seed: 7)
        r.prompt = "a cat, (猫:1.2)"
        r.clipSkip = 2
        r.etaNoiseSeedDelta = 31337
        let img = try Fixtures.pipeline.txt2img(r)[0]
        #expect(img.infotext == """
            a cat, (猫:1.2)
            Negative prompt: blurry
            Steps: 6, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.0, Seed: 7, Size: 128x128, Model hash: a7caa29fe8, Model: tiny-sd15, Clip skip: 2, ENSD: 31337, RNG: CPU, Version: v1.10.1
            """)
        let png = try PNG.encode(Image8(width: img.width, height: img.height, channels: 3, pixels: img.rgb), text: [("parameters", img.infotext)])
        let (decoded, text) = try PNG.decode(png)
        #expect(decoded.pixels == img.rgb)
        #expect(text["parameters"] == img.infotext)
        let p = Infotext.parse(img.infotext)
        #expect(p["Prompt"] == "a cat, (猫:1.2)")
        #expect(p["Negative prompt"] == "blurry")
        #expect(p["Steps"] == "6" && p["Seed"] == "7" && p["Size-1"] == "128" && p["Size-2"] == "128")
        #expect(p["Clip skip"] == "2" && p["RNG"] == "CPU" && p["Model hash"] == "a7caa29fe8")
    }

    @Test func quotedInfotextValuesRoundTrip() {
        let text = Infotext.make(prompt: "p", negativePrompt: "", fields: [("Steps", "2"), ("Model", "a, b: c"), ("Seed", "1")])
        #expect(text == "p\nSteps: 2, Model: \"a, b: c\", Seed: 1")
        #expect(Infotext.parse(text)["Model"] == "a, b: c")
    }

    @Test func progressReportsEveryStepAndCanStopTheJob() throws {
        struct Stop: Error {}
        var seen: [Int] = []
        #expect(throws: Stop.self) {
            _ = try Fixtures.pipeline.txt2img(request(seed: 1)) { p in
                seen.append(p.step)
                if p.step == 3 { throw Stop() }
            }
        }
        #expect(seen == [1, 2, 3])
    }
}

/// A1111's `Sampler.initialize`: `p.eta` when the request gives one, else the setting of the sampler's
/// kind — resolved for each pass, so a hires pass with another sampler gets its own.
struct EtaResolutionTests {
    @Test func etaComesFromTheRequestOrTheSettingOfTheSamplersKind() {
        var r = GenerationRequest()
        r.etaSettings = .init(ancestral: 0.6, ddim: 0.3)
        #expect(r.resolvedEta(for: .eulerA) == 0.6)
        #expect(r.resolvedEta(for: .dpmpp2mSDE) == 0.6)
        #expect(r.resolvedEta(for: .ddim) == 0.3)
        #expect(r.resolvedEta(for: .ddimCFGpp) == 0.3, "DDIM CFG++ takes eta_ddim too (A1111 1.10's ddim_cfgpp has an eta)")
        #expect(r.resolvedEta(for: .euler) == nil && r.resolvedEta(for: .plms) == nil)
        r.eta = 0.9
        #expect(r.resolvedEta(for: .eulerA) == 0.9 && r.resolvedEta(for: .ddim) == 0.9, "a request's eta wins for every kind")
    }

    /// A request whose first pass runs `first` and whose hires pass runs `second`.
    func hiresRequest(_ first: Sampler, then second: Sampler, ancestral: Double, ddim: Double) -> GenerationRequest {
        var r = GenerationRequest()
        r.sampler = first
        r.etaSettings = .init(ancestral: ancestral, ddim: ddim)
        var hr = HiresFix()
        hr.sampler = second
        r.hires = hr
        return r
    }

    @Test func aHiresPassWithAnotherSamplerWritesItsOwnEta() {
        var r = hiresRequest(.eulerA, then: .ddim, ancestral: 0.6, ddim: 0.3)
        let info = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(info.contains("Eta: 0.6, Eta DDIM: 0.3"), "\(info)")
        r.etaSettings = .init(ancestral: 1, ddim: 0)
        let defaults = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(!defaults.contains("Eta"), "defaults are not written: \(defaults)")
        r.hires?.sampler = .dpmpp2sA
        r.etaSettings.ancestral = 0.5
        let same = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(same.components(separatedBy: "Eta: 0.5").count == 2, "one key, written once: \(same)")
    }

    @Test func theHiresSamplersEtaEntryComesAfterTheFirstPassSamplerEntries() {
        var r = hiresRequest(.euler, then: .ddim, ancestral: 1, ddim: 0.3)
        r.samplerOptions.sChurn = 0.5
        r.samplerOptions.fromSettings.insert("s_churn")
        let info = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(info.contains("Sigma churn: 0.5, Eta DDIM: 0.3"), "\(info)")
    }

    @Test func theHiresSamplersSigmaEntriesAreWrittenWhenOnlyItTakesThem() {
        var r = hiresRequest(.dpmpp2m, then: .euler, ancestral: 1, ddim: 0)
        r.samplerOptions.sChurn = 0.5
        r.samplerOptions.fromSettings.insert("s_churn")
        let info = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(info.components(separatedBy: "Sigma churn: 0.5").count == 2, "DPM++ 2M takes no churn, the hires Euler does: \(info)")
        r.hires?.sampler = .dpmpp2m
        #expect(!Fixtures.pipeline.infotext(r, seed: 1).contains("Sigma churn"), "neither pass takes churn")
    }

    @Test func theHiresSchedulesOverridesAreWrittenAfterTheFirstPassEntries() {
        var r = hiresRequest(.euler, then: .euler, ancestral: 1, ddim: 0)
        r.samplerOptions.rho = 5
        r.samplerOptions.sChurn = 0.5
        r.samplerOptions.fromSettings.insert("s_churn")
        #expect(!Fixtures.pipeline.infotext(r, seed: 1).contains("Schedule rho"), "Automatic passes ρ to no schedule")
        r.hires?.scheduler = .karras
        let info = Fixtures.pipeline.infotext(r, seed: 1)
        #expect(info.contains("Sigma churn: 0.5, Schedule rho: 5.0"), "the hires pass's Karras takes ρ: \(info)")
    }

    @Test func ensdWithHiresFixAsksTheRequestsEtaOnlyAsA1111ResetsItsSampler() {
        var r = GenerationRequest()
        r.sampler = .eulerA
        r.etaNoiseSeedDelta = 31337
        r.etaSettings = .init(ancestral: 0, ddim: 0)
        #expect(!Fixtures.pipeline.infotext(r, seed: 1).contains("ENSD"), "eta 0: the noise seed delta is not used")
        r.hires = HiresFix()
        #expect(Fixtures.pipeline.infotext(r, seed: 1).contains("ENSD: 31337"),
                "after a hires pass A1111's p.sampler is None, so only p.eta (unset: 1) counts")
    }
}

/// The progress a job reports counts the steps its samplers really take, first pass and hires pass.
struct ProgressCountTests {
    func steps(_ configure: (inout GenerationRequest) -> Void) throws -> (reported: [Int], total: Int) {
        var r = PipelineTests().request(seed: 11, size: 64)
        configure(&r)
        var seen: [Int] = []
        var total = 0
        _ = try Fixtures.pipeline.txt2img(r) { p in
            seen.append(p.step)
            total = p.steps
        }
        #expect(total == Pipeline.totalSamplingSteps(r))
        return (seen, total)
    }

    @Test(arguments: [
        ("DDIM with always-discard", Sampler.ddim, nil as Sampler?, true),
        ("UniPC with always-discard", .uniPC, nil, true),
        ("Euler then a DDIM hires pass", .euler, .ddim, false),
        ("DDIM then a UniPC hires pass", .ddim, .uniPC, false),
        ("PLMS hires pass with PLMS", .plms, nil, false),
        ("Euler a hires pass", .eulerA, nil, false),
    ])
    func theLastReportedStepIsTheTotal(_ label: String, _ sampler: Sampler, _ hiresSampler: Sampler?, _ discard: Bool) throws {
        let (seen, total) = try steps { r in
            r.sampler = sampler
            r.samplerOptions.discardPenultimateSigma = discard
            if discard { return }
            var hr = HiresFix()
            hr.scale = 1.5
            hr.sampler = hiresSampler
            r.hires = hr
            r.denoisingStrength = 0.7
        }
        #expect(seen == Array(1...total), "\(label): reported \(seen), total \(total)")
    }
}
