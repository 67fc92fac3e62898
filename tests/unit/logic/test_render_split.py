"""render_task: an out-of-memory batch is split in halves with the right seeds."""

from __future__ import annotations

import pytest

from subconscious.errors import RendererError, RendererOutOfMemory
from subconscious.logic.render_run import render_task
from subconscious.models import RenderTask
from subconscious.render.a1111 import A1111Client, RenderedImage
from tests import builders


class FakeClient(A1111Client):
    """Runs out of memory above ``fits`` images per call; records every call's seeds."""

    def __init__(self, fits: int, error: Exception | None = None) -> None:
        self.fits = fits
        self.error = error
        self.calls: list[list[int]] = []

    def txt2img(self, task: RenderTask) -> list[RenderedImage]:
        self.calls.append(task.seeds)
        if self.error is not None:
            raise self.error
        if task.batch_size > self.fits:
            raise RendererOutOfMemory("CUDA out of memory")
        return [RenderedImage(seed=s, png=f"png-{s}".encode()) for s in task.seeds]

    def close(self) -> None:
        pass


def task(seed: int, batch_size: int) -> RenderTask:
    return builders.render_task(seed, batch_size, prompt_index=3)


def test_a_batch_that_fits_is_one_call() -> None:
    client = FakeClient(fits=8)
    images = render_task(client, task(100, 8))
    assert [i.seed for i in images] == list(range(100, 108))
    assert client.calls == [list(range(100, 108))]


def test_out_of_memory_splits_8_into_4_and_4() -> None:
    client = FakeClient(fits=4)
    images = render_task(client, task(100, 8))
    assert client.calls == [list(range(100, 108)), [100, 101, 102, 103], [104, 105, 106, 107]]
    assert [i.seed for i in images] == list(range(100, 108))
    assert [i.png for i in images] == [f"png-{s}".encode() for s in range(100, 108)]


def test_splits_again_until_it_fits() -> None:
    client = FakeClient(fits=2)
    images = render_task(client, task(100, 8))
    assert client.calls == [
        list(range(100, 108)),
        [100, 101, 102, 103],
        [100, 101],
        [102, 103],
        [104, 105, 106, 107],
        [104, 105],
        [106, 107],
    ]
    assert [i.seed for i in images] == list(range(100, 108))


def test_odd_batch_splits_into_floor_and_rest() -> None:
    client = FakeClient(fits=4)
    images = render_task(client, task(10, 7))
    assert client.calls == [list(range(10, 17)), [10, 11, 12], [13, 14, 15, 16]]
    assert [i.seed for i in images] == list(range(10, 17))


def test_down_to_single_images() -> None:
    client = FakeClient(fits=1)
    images = render_task(client, task(0, 3))
    assert [c for c in client.calls if len(c) == 1] == [[0], [1], [2]]
    assert [i.seed for i in images] == [0, 1, 2]


def test_out_of_memory_at_batch_1_is_raised() -> None:
    client = FakeClient(fits=0)
    with pytest.raises(RendererOutOfMemory):
        render_task(client, task(5, 1))
    assert client.calls == [[5]]


def test_out_of_memory_at_every_size_is_raised_after_splitting_to_one() -> None:
    client = FakeClient(fits=0)
    with pytest.raises(RendererOutOfMemory):
        render_task(client, task(5, 4))
    # 4 -> 2 -> 1: the first single image fails, nothing after it is tried
    assert client.calls == [[5, 6, 7, 8], [5, 6], [5]]


def test_other_errors_are_not_split() -> None:
    client = FakeClient(fits=8, error=RendererError("HTTP 500"))
    with pytest.raises(RendererError, match="HTTP 500"):
        render_task(client, task(5, 8))
    assert client.calls == [list(range(5, 13))]


def test_split_tasks_keep_everything_but_seed_and_batch() -> None:
    seen: list[RenderTask] = []

    class Recording(FakeClient):
        def txt2img(self, task: RenderTask) -> list[RenderedImage]:
            seen.append(task)
            return super().txt2img(task)

    render_task(Recording(fits=4), task(100, 8))
    second = seen[2]
    assert (second.seed, second.batch_size) == (104, 4)
    assert second.model_dump(exclude={"seed", "batch_size"}) == task(100, 8).model_dump(
        exclude={"seed", "batch_size"}
    )
