import AtelierModels
import Foundation

/// A1111's settings (`/sdapi/v1/options`): defaults of 1.10, overridden by `config.json` in the
/// data dir, where every change is persisted.
public final class OptionsStore: @unchecked Sendable {
    public static let defaults: [String: JSONValue] = [
        "sd_model_checkpoint": .string(""), "sd_checkpoint_hash": .string(""), "sd_vae": .string("Automatic"),
        "sd_vae_overrides_per_model_preferences": .bool(true), "CLIP_stop_at_last_layers": .int(1),
        "eta_noise_seed_delta": .int(0), "randn_source": .string("GPU"), "eta_ancestral": .double(1.0),
        "eta_ddim": .double(0.0), "s_churn": .double(0.0), "s_tmin": .double(0.0), "s_tmax": .double(0.0),
        "s_noise": .double(1.0), "s_min_uncond": .double(0.0), "sigma_min": .double(0.0), "sigma_max": .double(0.0),
        "rho": .double(0.0), "k_sched_type": .string("Automatic"), "always_discard_next_to_last_sigma": .bool(false),
        "sgm_noise_multiplier": .bool(false), "uni_pc_variant": .string("bh1"), "uni_pc_skip_type": .string("time_uniform"),
        "uni_pc_order": .int(3), "uni_pc_lower_order_final": .bool(true), "beta_dist_alpha": .double(0.6),
        "beta_dist_beta": .double(0.6), "emphasis": .string("Original"), "comma_padding_backtrack": .int(20),
        "enable_batch_seeds": .bool(true), "tiling": .bool(false), "samples_save": .bool(true),
        "samples_format": .string("png"), "samples_filename_pattern": .string(""), "save_images_add_number": .bool(true),
        "grid_save": .bool(true), "grid_format": .string("png"), "grid_extended_filename": .bool(false),
        "grid_only_if_multiple": .bool(true), "grid_prevent_empty_spots": .bool(false), "n_rows": .int(-1),
        "return_grid": .bool(true), "enable_pnginfo": .bool(true), "save_txt": .bool(false), "jpeg_quality": .int(80),
        "export_for_4chan": .bool(true), "outdir_samples": .string(""), "outdir_grids": .string(""),
        "outdir_txt2img_samples": .string("outputs/txt2img-images"), "outdir_img2img_samples": .string("outputs/img2img-images"),
        "outdir_extras_samples": .string("outputs/extras-images"), "outdir_txt2img_grids": .string("outputs/txt2img-grids"),
        "outdir_img2img_grids": .string("outputs/img2img-grids"), "outdir_save": .string("log/images"),
        "outdir_init_images": .string("outputs/init-images"), "save_to_dirs": .bool(true), "grid_save_to_dirs": .bool(true),
        "directories_filename_pattern": .string("[date]"), "add_model_hash_to_info": .bool(true),
        "add_model_name_to_info": .bool(true), "add_vae_hash_to_info": .bool(true), "add_vae_name_to_info": .bool(true),
        "add_version_to_infotext": .bool(true), "add_user_name_to_info": .bool(false), "infotext_styles": .string("Apply if any"),
        "infotext_skip_pasting": .array([]), "live_previews_enable": .bool(true), "show_progress_every_n_steps": .int(10),
        "show_progress_type": .string("Approx cheap"), "live_preview_content": .string("Prompt"), "face_restoration": .bool(false),
        "face_restoration_model": .string("CodeFormer"), "code_former_weight": .double(0.5), "img2img_fix_steps": .bool(false),
        "initial_noise_multiplier": .double(1.0), "img2img_color_correction": .bool(false),
        "img2img_background_color": .string("#ffffff"), "inpainting_mask_weight": .double(1.0), "upscaler_for_img2img": .null,
        "use_old_scheduling": .bool(false), "use_old_emphasis_implementation": .bool(false), "persistent_cond_cache": .bool(true),
        "pad_cond_uncond": .bool(false), "token_merging_ratio": .double(0.0), "disable_weights_auto_swap": .bool(true),
        "api_enable_requests": .bool(true), "api_forbid_local_requests": .bool(true), "api_useragent": .string(""),
        "sd_checkpoints_limit": .int(1), "sd_checkpoint_cache": .int(0), "sd_unet": .string("Automatic"),
        "sdxl_crop_top": .int(0), "sdxl_crop_left": .int(0), "save_init_img": .bool(false), "temp_dir": .string(""),
        // sd-webui-controlnet's settings (what the API reads)
        "control_net_no_detectmap": .bool(false), "control_net_detectmap_autosaving": .bool(false),
        "control_net_detectedmap_dir": .string("detected_maps"), "control_net_unit_count": .int(3),
        "control_net_model_cache_size": .int(2),
        // Atelier's: GroupNorm statistics of a VAE decode or encode run in tiles (above 768² decoded,
        // 1024² encoded): "exact" (the whole picture's, A1111's picture) or "tile" (each tile's own, faster)
        "atelier_vae_tile_statistics": .string(TileStatistics.byDefault.rawValue),
    ]

    private let lock = NSLock()
    private var values: [String: JSONValue]
    private let file: URL

    public init(file: URL) {
        self.file = file
        var v = Self.defaults
        if let data = try? Data(contentsOf: file), case .object(let saved)? = try? JSONDecoder().decode(JSONValue.self, from: data) {
            for (k, x) in saved { v[k] = x }
        }
        values = v
    }

    public var all: [String: JSONValue] { lock.withLock { values } }
    public subscript(key: String) -> JSONValue? { lock.withLock { values[key] } }

    public var clipSkip: Int { self["CLIP_stop_at_last_layers"]?.int ?? 1 }
    public var ensd: Int { self["eta_noise_seed_delta"]?.int ?? 0 }
    public var randnSource: String { self["randn_source"]?.string ?? "GPU" }
    /// img2img's default `initial_noise_multiplier`
    public var initialNoiseMultiplier: Double { self["initial_noise_multiplier"]?.any as? Double ?? Double(self["initial_noise_multiplier"]?.int ?? 1) }
    /// `atelier_vae_tile_statistics`: the tiled VAE's GroupNorm statistics.
    public var vaeTileStatistics: TileStatistics {
        self["atelier_vae_tile_statistics"]?.string.flatMap(TileStatistics.init(rawValue:)) ?? TileStatistics.byDefault
    }
    public var previewEvery: Int { max(1, self["show_progress_every_n_steps"]?.int ?? 10) }

    /// Checks a partial update: unknown keys and values of the wrong JSON type are refused,
    /// naming the key; `outdir_*` paths must stay relative.
    /// Ranges of the sampler options (A1111's sliders), checked for settings and per-request overrides.
    public static let samplerOptionMax: [String: Double] = ["s_churn": 100, "s_tmin": 10, "s_tmax": 999, "s_noise": 10,
                                                            "sigma_min": 1000, "sigma_max": 1000, "rho": 100]

    public func validate(_ update: [String: JSONValue]) throws {
        for (k, v) in update {
            guard let current = Self.defaults[k] else { throw ServiceError(422, field: k, "unknown option \(k)") }
            switch (current, v) {
            case (.null, _), (.bool, .bool), (.string, .string), (.array, .array), (.object, .object),
                 (.int, .int), (.double, .int), (.double, .double):
                break
            case (.int, .double(let d)) where d == d.rounded():
                break
            default:
                throw ServiceError(422, field: k, "option \(k): wrong type")
            }
            if k == "atelier_vae_tile_statistics", v.string.flatMap(TileStatistics.init(rawValue:)) == nil {
                throw ServiceError(422, field: k, "option \(k): \"exact\" or \"tile\"")
            }
            if let hi = Self.samplerOptionMax[k], !(v.double.map { $0.isFinite && $0 >= 0 && $0 <= hi } ?? false) {
                throw ServiceError(422, field: k, "option \(k): a number 0…\(hi)")
            }
            if k.hasPrefix("outdir_") || k == "temp_dir", let p = v.string, p.hasPrefix("/") || p.split(separator: "/").contains("..") {
                throw ServiceError(422, field: k, "option \(k): path must stay inside the data dir")
            }
        }
    }

    /// Applies and persists an update (already validated).
    public func set(_ update: [String: JSONValue]) throws {
        let snapshot: [String: JSONValue] = lock.withLock {
            for (k, v) in update { values[k] = v }
            return values
        }
        var changed: [String: JSONValue] = [:]
        for (k, v) in snapshot where Self.defaults[k] != v { changed[k] = v }
        let data = JSONValue.object(changed).data()
        try data.write(to: file, options: .atomic)
    }
}
