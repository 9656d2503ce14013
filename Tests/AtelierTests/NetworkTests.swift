import AtelierDiffusion
import AtelierModels
import Foundation
import Testing

/// Extra networks patch the model's weights in place; switching must be exact.
@Suite(.serialized) struct NetworkTests {
    static let lora = Fixtures.root.appendingPathComponent("networks/Lora")
    /// its own copy: the golden suite patches `Fixtures.networkPipeline` at the same time
    static let model = try! StableDiffusionModel(path: Fixtures.checkpoint)

    @Test func kohyaNamesMapToTheLDMModulesAsA1111Converts() {
        #expect(NetworkFile.compvisName("lora_unet_down_blocks_0_attentions_0_proj_in") == "diffusion_model_input_blocks_1_1_proj_in")
        #expect(NetworkFile.compvisName("lora_unet_down_blocks_1_resnets_1_conv1") == "diffusion_model_input_blocks_5_0_in_layers_2")
        #expect(NetworkFile.compvisName("lora_unet_mid_block_resnets_1_time_emb_proj") == "diffusion_model_middle_block_2_emb_layers_1")
        #expect(NetworkFile.compvisName("lora_unet_up_blocks_0_upsamplers_0_conv") == "diffusion_model_output_blocks_2_1_conv")
        #expect(NetworkFile.compvisName("lora_unet_up_blocks_1_upsamplers_0_conv") == "diffusion_model_output_blocks_5_2_conv")
        #expect(NetworkFile.compvisName("lora_unet_down_blocks_2_downsamplers_0_conv") == "diffusion_model_input_blocks_9_0_op")
        #expect(NetworkFile.compvisName("lora_te_text_model_encoder_layers_3_mlp_fc1") == "transformer_text_model_encoder_layers_3_mlp_fc1")
    }

    @Test func kohyaTextEncoderNamesMapToOpenCLIPModulesOnSD2() {
        let te = "lora_te_text_model_encoder_layers_3_"
        #expect(NetworkFile.compvisName(te + "self_attn_q_proj", sd2: true) == "model_transformer_resblocks_3_attn_q_proj")
        #expect(NetworkFile.compvisName(te + "self_attn_out_proj", sd2: true) == "model_transformer_resblocks_3_attn_out_proj")
        #expect(NetworkFile.compvisName(te + "mlp_fc1", sd2: true) == "model_transformer_resblocks_3_mlp_c_fc")
        #expect(NetworkFile.compvisName(te + "mlp_fc2", sd2: true) == "model_transformer_resblocks_3_mlp_c_proj")
        #expect(NetworkFile.compvisName("lora_unet_down_blocks_0_attentions_0_proj_in", sd2: true) == "diffusion_model_input_blocks_1_1_proj_in")
    }

    /// tools/make_sd2_lora.py's file: every text-encoder layer has q/k/v/out and fc1/fc2, except that
    /// layer 1 lacks k_proj and out_proj.
    @Test func sd2AttentionIsPatchedOnlyWhereTheNetworkHasAllFourProjections() throws {
        let model = try StableDiffusionModel(path: Fixtures.root.appendingPathComponent("models/tiny-sd2.safetensors").path)
        let file = try NetworkFile(path: Fixtures.root.appendingPathComponent("networks/Lora-sd2/tiny_sd2_lora.safetensors").path)
        let original = model.parameters.mapValues(\.scalars)
        let patched = try model.applyNetworks([NetworkUse(file: file, te: 1, unet: 1)])
        #expect(patched == 277 + 2 * 4 + 3 * 2, "277 UNet modules, layers 0 and 2's four attention projections, three layers' fc1 and fc2")
        func changed(_ layer: Int, _ part: String) -> Bool {
            let key = "cond_stage_model.model.transformer.resblocks.\(layer).\(part).weight"
            return model.parameters[key]!.scalars != original[key]!
        }
        for part in ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "mlp.c_fc", "mlp.c_proj"] {
            #expect(changed(0, part) && changed(2, part), "\(part) of layers 0 and 2")
            #expect(changed(1, part) == part.hasPrefix("mlp"), "layer 1: \(part)")
        }
        #expect(model.parameters.keys.allSatisfy { !$0.contains("in_proj") }, "the fused weight is held once, as its q / k / v parts")
        try model.applyNetworks([])
        #expect(model.parameters.mapValues(\.scalars) == original)
    }

    @Test func everyModuleOfTheTestNetworksFindsItsWeight() throws {
        let model = Self.model
        for (name, modules) in [("tiny_lora", 289), ("tiny_loha", 222), ("tiny_lokr", 186)] {
            let file = try NetworkFile(path: Self.lora.appendingPathComponent(name + ".safetensors").path)
            #expect(try model.applyNetworks([NetworkUse(file: file, te: 1, unet: 1)]) == modules, "\(name): patched modules")
        }
        try model.applyNetworks([])
    }

    @Test func aThousandSwitchesLeaveNoDrift() throws {
        let model = Self.model
        try model.applyNetworks([])
        let original = model.parameters.mapValues(\.scalars)
        let a = try NetworkFile(path: Self.lora.appendingPathComponent("tiny_lora.safetensors").path)
        let b = try NetworkFile(path: Self.lora.appendingPathComponent("tiny_loha.safetensors").path)
        try model.applyNetworks([NetworkUse(file: a, te: 0.8, unet: 0.8)])
        let withA = model.parameters.mapValues(\.scalars)
        #expect(withA != original)
        for i in 0..<1000 {
            switch i % 3 {
            case 0: try model.applyNetworks([NetworkUse(file: b, te: 1, unet: 0.5)])
            case 1: try model.applyNetworks([NetworkUse(file: a, te: 0.8, unet: 0.8), NetworkUse(file: b, te: 0.3, unet: 0.3)])
            default: try model.applyNetworks([])
            }
        }
        try model.applyNetworks([NetworkUse(file: a, te: 0.8, unet: 0.8)])
        #expect(model.parameters.mapValues(\.scalars) == withA, "the same network gives bit-identical weights after 1000 switches")
        try model.applyNetworks([])
        #expect(model.parameters.mapValues(\.scalars) == original, "no network: the checkpoint's weights exactly")
    }

    @Test func tagsGiveMultipliersAsA1111ReadsThem() throws {
        let r = NetworkResolver(directories: [Self.lora])
        let (uses, missing) = try r.uses(in: "x <lora:tiny_lora:0.5> <lora:tiny_loha:1:0.3> <lyco:tiny_lokr:te=0.2:unet=0.9> <lora:absent:1> <lora:tiny_lora>")
        #expect(uses.map(\.file.name) == ["tiny_lora", "tiny_loha", "tiny_lokr", "tiny_lora"])
        #expect(uses.map(\.te) == [0.5, 1, 0.2, 1])
        #expect(uses.map(\.unet) == [0.5, 0.3, 0.9, 1])
        #expect(missing == ["absent"])
        #expect(throws: RequestError.self) { try r.uses(in: "<lora:tiny_lora:much>") }
    }
}
