"""Toy world: renderer, prompts/specs, exact checker (mutation tests) and the lossless patch tokenizer."""
import copy

import numpy as np
import pytest

from scalingar_core.models.toy import checker, prompts, render, tokenizer


def _scenes(per_category=30, seed=0, world=render.SMALL):
    rng = np.random.default_rng(seed)
    out = []
    for cat in prompts.CATEGORIES:
        pool = prompts.all_specs(cat)
        for _ in range(per_category):
            spec = pool[rng.integers(len(pool))]
            out.append((spec, render.sample_scene(spec, rng, world)))
    return out


SCENES = _scenes()
WORLD_SCENES = {w.name: _scenes(world=w) for w in render.WORLDS.values()}
WORLDS = pytest.mark.parametrize("world", list(render.WORLDS.values()), ids=list(render.WORLDS))


# ------------------------------------------------------------------------------------------ renderer

def test_render_is_deterministic_from_seed():
    spec = prompts.parse("a red circle left of a blue square")
    s1, a = render.render_spec(spec, 7)
    s2, b = render.render_spec(spec, 7)
    s3, c = render.render_spec(spec, 8)
    assert s1 == s2 and np.array_equal(a, b)
    assert s1 != s3  # another seed places the objects elsewhere


def test_render_uses_exact_palette_and_white_background():
    allowed = {render.BACKGROUND, *render.PALETTE.values()}
    for spec, scene in SCENES[::10]:
        img = render.render(scene)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        colours = {tuple(p) for p in img.reshape(-1, 3)}
        assert colours <= allowed
        want = {render.PALETTE[o["color"]] for o in spec["objects"]}
        assert colours - {render.BACKGROUND} == want


@WORLDS
def test_scene_layout_constraints(world):
    for spec, scene in WORLD_SCENES[world.name]:
        objs = scene["objects"]
        assert scene["size"] == world.image_size
        assert [(o["color"], o["shape"]) for o in objs] == [(o["color"], o["shape"]) for o in spec["objects"]]
        for o in objs:
            assert o["size"] in world.sizes and o["x"] % world.snap == 0 and o["y"] % world.snap == 0
            assert o["x"] + o["size"] <= world.image_size and o["y"] + o["size"] <= world.image_size
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                assert render.box_gap(objs[i], objs[j]) >= world.min_gap
        rel = spec["relation"]
        if rel:
            assert render.relation_holds(rel["type"], objs[rel["subject"]], objs[rel["reference"]],
                                         world.relation_min_separation)


@WORLDS
def test_shape_masks_fill_their_box(world):
    for shape in render.SHAPES:
        for s in world.sizes:
            m = render.shape_mask(shape, s)
            assert m.any(0).all() and m.any(1).all()  # the checker reads size from the bounding box


def test_render_rejects_bad_objects():
    with pytest.raises(ValueError, match="colour"):
        render.render({"objects": [{"color": "pink", "shape": "circle", "size": 8, "x": 0, "y": 0}]})
    with pytest.raises(ValueError, match="does not fit"):
        render.render({"objects": [{"color": "red", "shape": "circle", "size": 10, "x": 24, "y": 0}]})


# ------------------------------------------------------------------------------------------ prompts

def test_caption_parse_round_trip_and_categories():
    for cat in prompts.CATEGORIES:
        for spec in prompts.all_specs(cat):
            text = prompts.caption(spec)
            assert prompts.parse(text) == spec
            assert prompts.category_of(spec) == cat
    assert prompts.parse("Two green triangles.")["count"] == 2
    with pytest.raises(ValueError, match="Accepted forms"):
        prompts.parse("a purple hexagon")


def test_builtin_eval_set_sizes_and_held_out_tier():
    entries = prompts.builtin_eval()
    assert entries == prompts.builtin_eval()  # fixed
    for cat in prompts.CATEGORIES:
        mine = [e for e in entries if e["category"] == cat]
        assert len(mine) >= 100
        hard = [e for e in mine if e["tier"] == "held_out"]
        assert (len(hard) > 0) == (cat in prompts.MULTI_OBJECT)
        for e in mine:
            assert prompts.parse(e["prompt"]) == e["spec"]
            assert prompts.is_held_out(e["spec"]) == (e["tier"] == "held_out")


def test_training_captions_never_bind_held_out_pairs_in_multi_object_prompts():
    rng = np.random.default_rng(0)
    specs = [prompts.sample_train_spec(rng) for _ in range(3000)]
    assert not any(prompts.is_held_out(s) for s in specs)
    cats = {prompts.category_of(s) for s in specs}
    assert cats == set(prompts.CATEGORIES)
    # held-out pairs still appear alone, so the model knows them
    singles = {(s["objects"][0]["color"], s["objects"][0]["shape"]) for s in specs
               if prompts.category_of(s) in ("single_object", "counting")}
    assert set(prompts.HELD_OUT) <= singles


def test_prompt_file_round_trip_and_errors(tmp_path):
    from scalingar_core.app.bench import load_prompts  # the prompt-file reader generate shares, toy specs on top

    load_jsonl = lambda path: load_prompts(str(path), per_category=0)  # noqa: E731
    entries = prompts.builtin_eval(per_category=2)
    path = tmp_path / "p.jsonl"
    prompts.save_jsonl(entries, path)
    assert load_jsonl(path) == entries
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "spec": {"objects": [{"color": "pink", "shape": "circle"}]}}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_jsonl(bad)
    free = tmp_path / "free.jsonl"
    free.write_text('{"prompt": "a photo of a cat"}\n')
    assert load_jsonl(free)[0]["category"] == "uncategorised"


# ------------------------------------------------------------------------------------------ checker

@WORLDS
def test_checker_passes_every_true_render(world):
    for spec, scene in WORLD_SCENES[world.name]:
        res = checker.check(render.render(scene), spec)
        assert res.passed, (spec, scene, res.reason)


def test_checker_accepts_float_chw_tensors():
    import torch

    spec, scene = SCENES[0]
    img = torch.from_numpy(render.render(scene)).permute(2, 0, 1).float() / 255
    assert checker.check(img, spec).passed


def _free_spot(scene, obj, rng, world):
    for _ in range(500):
        corners = np.arange(0, world.image_size - obj["size"] + 1, world.snap)
        cand = dict(obj, x=int(rng.choice(corners)), y=int(rng.choice(corners)))
        if all(render.box_gap(cand, o) >= world.min_gap for o in scene["objects"]):
            return cand
    return None


@WORLDS
def test_checker_mutations_fail_with_reasons(world):
    rng = np.random.default_rng(1)
    counts = {"colour": 0, "delete": 0, "duplicate": 0, "move": 0, "break": 0}
    for spec, scene in WORLD_SCENES[world.name]:
        assert checker.check(render.render(scene), spec).passed
        # swap a colour
        m = copy.deepcopy(scene)
        old = m["objects"][0]["color"]
        m["objects"][0]["color"] = next(c for c in render.COLORS if c != old)
        res = checker.check(render.render(m), spec)
        assert not res.passed and "missing" in res.reason and old in res.reason
        counts["colour"] += 1
        # delete one
        m = copy.deepcopy(scene)
        gone = m["objects"].pop(int(rng.integers(len(m["objects"]))))
        res = checker.check(render.render(m), spec)
        assert not res.passed and f"missing 1× {gone['color']} {gone['shape']}" in res.reason
        counts["delete"] += 1
        # duplicate one (when there is room)
        m = copy.deepcopy(scene)
        dup = _free_spot(m, m["objects"][0], rng, world)
        if dup is not None:
            m["objects"].append(dup)
            res = checker.check(render.render(m), spec)
            assert not res.passed and f"unexpected 1× {dup['color']} {dup['shape']}" in res.reason
            counts["duplicate"] += 1
        # break a shape: cut the bottom half off one object
        img = render.render(scene)
        o = scene["objects"][0]
        img[o["y"] + o["size"] // 2: o["y"] + o["size"], o["x"]: o["x"] + o["size"]] = 255
        res = checker.check(img, spec)
        assert not res.passed and res.reason
        counts["break"] += 1
        # move an object across: mirror the image along the relation's axis
        rel = spec["relation"]
        if rel:
            axis = 1 if rel["type"] in ("left_of", "right_of") else 0
            res = checker.check(np.flip(render.render(scene), axis=axis).copy(), spec)
            assert not res.passed and "is not" in res.reason
            # ... and moving the objects into each other's places (attributes swapped) fails too
            m = copy.deepcopy(scene)
            a, b = m["objects"][rel["subject"]], m["objects"][rel["reference"]]
            for k in ("color", "shape"):
                a[k], b[k] = b[k], a[k]
            assert not checker.check(render.render(m), spec).passed
            counts["move"] += 1
    assert min(counts.values()) >= 20, counts


def test_checker_rejects_merged_objects():
    spec = prompts.parse("two red squares")
    scene = {"size": 32, "objects": [{"color": "red", "shape": "square", "size": 8, "x": 4, "y": 4},
                                     {"color": "red", "shape": "square", "size": 8, "x": 12, "y": 4}]}
    res = checker.check(render.render(scene), spec)  # touching: one 16×8 component
    assert not res.passed and "malformed" in res.reason


# ------------------------------------------------------------------------------------------ tokenizer

def test_codebook_is_deterministic_and_white_first():
    book = tokenizer.codebook()
    assert (book[0] == 255).all()
    assert len({p.tobytes() for p in book}) == len(book) == tokenizer.vocab_size()


@WORLDS
def test_tokenizer_round_trip_is_lossless_on_many_renders(world):
    rng = np.random.default_rng(3)
    imgs = np.stack([render.render(render.sample_scene(prompts.sample_train_spec(rng), rng, world))
                     for _ in range(600)] + [render.render(s) for _, s in WORLD_SCENES[world.name]])
    codes = tokenizer.encode(imgs)
    v = tokenizer.vocab_size(world)
    assert codes.shape == (len(imgs), world.tokens) and codes.min() >= 0 and codes.max() < v
    assert np.array_equal(tokenizer.decode(codes), imgs)
    assert np.array_equal(tokenizer.encode(imgs[0]), codes[0])  # single image form


def test_worlds_differ_only_in_scale():
    small, large = render.SMALL, render.LARGE
    assert (small.grid, small.tokens, large.grid, large.tokens) == (8, 64, 16, 256)
    assert large.image_size >= 64 and render.world_of_size(64) is large and tokenizer.world_of_tokens(64) is small
    with pytest.raises(ValueError, match="no toy world"):
        render.render({"size": 48, "objects": []})
    with pytest.raises(ValueError, match="allowed"):  # a small-world object size in the large world
        render.render({"size": 64, "objects": [{"color": "red", "shape": "circle", "size": 8, "x": 0, "y": 0}]})


def test_tokenizer_maps_unknown_patches_to_nearest():
    spec, scene = SCENES[0]
    img = render.render(scene)
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-30, 31, img.shape), 0, 255)
    assert np.array_equal(tokenizer.encode(noisy.astype(np.uint8)), tokenizer.encode(img))
    with pytest.raises(ValueError, match="codes must lie"):
        tokenizer.decode(np.full((1, 64), tokenizer.vocab_size()))
