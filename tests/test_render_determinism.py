"""Same seed, same pixels: a scene renders identically whatever was rendered before it."""

import numpy as np
import pytest

from focalstack.render.config import load_preset
from focalstack.render.sampling import sample_scene, scene_seed

pytestmark = pytest.mark.blender


def test_scene_renders_the_same_first_or_after_another():
    from focalstack.render.blender import BlenderRenderer

    config = load_preset("fod500").with_overrides(width=32, height=32, samples=2, denoise=False).validate()
    first, other = (sample_scene(config, scene_seed(5, i)) for i in range(2))
    with BlenderRenderer(samples=2, denoise=False) as renderer:
        a = renderer.render(first)
        renderer.render(other)
        b = renderer.render(sample_scene(config, scene_seed(5, 0)))
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.aif, b.aif)
    np.testing.assert_array_equal(a.slices, b.slices)
    # and the renders are not trivially equal: slices differ from each other and from the AiF
    assert np.abs(a.slices[0] - a.slices[-1]).max() > 0.05
