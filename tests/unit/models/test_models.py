"""Domain models: request validation, order life cycle, work items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from subconscious.models import (
    OPEN_STATES,
    RENDERABLE_STATES,
    SIZE_LIMITS,
    TRANSITIONS,
    Constraints,
    ConstraintsIn,
    JobSpec,
    ModelFamily,
    OrderRequest,
    OrderState,
    PromptSpec,
    Quote,
    QuoteOption,
    QuoteRequest,
    RenderTask,
    Sampler,
    SeedPolicy,
    image_key,
    sources_of,
)
from tests import builders

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def job(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompts": [{"text": "a red fox", "count": 4}]}
    body.update(overrides)
    return body


def errors_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[tuple[Any, str]]:
    return [(e["loc"], e["type"]) for e in excinfo.value.errors()]


# --- JobSpec ---
def test_job_defaults() -> None:
    spec = JobSpec.model_validate(job())
    assert spec.model_family is ModelFamily.SD15
    assert (spec.width, spec.height, spec.steps) == (512, 512, 20)
    assert spec.cfg_scale == Decimal(7)
    assert spec.sampler is Sampler.EULER_A
    assert spec.seed == SeedPolicy(kind="random", base=None)
    assert spec.total_images == 4
    assert spec.megapixels == Decimal("0.262144")


def test_total_images_sums_every_prompt() -> None:
    spec = JobSpec.model_validate(
        job(
            prompts=[
                {"text": "a", "count": 3},
                {"text": "b", "count": 20},
                {"text": "c", "count": 1},
            ]
        )
    )
    assert spec.total_images == 24


@pytest.mark.parametrize(
    ("family", "side"),
    [("sd15", 256), ("sd15", 1024), ("sd15", 576), ("sdxl", 512), ("sdxl", 2048), ("sdxl", 1024)],
)
def test_sides_within_limits_are_accepted(family: str, side: int) -> None:
    spec = JobSpec.model_validate(job(model_family=family, width=side, height=side))
    assert (spec.width, spec.height) == (side, side)


@pytest.mark.parametrize(
    ("family", "side"),
    [
        ("sd15", 192),  # below 256
        ("sd15", 1088),  # above 1024
        ("sd15", 520),  # not a multiple of 64
        ("sdxl", 448),  # below 512
        ("sdxl", 2112),  # above 2048
        ("sdxl", 1000),
        ("sd15", 0),
        ("sd15", -512),
    ],
)
@pytest.mark.parametrize("field", ["width", "height"])
def test_sides_outside_limits_are_located(family: str, side: int, field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(model_family=family, **{field: side}))
    assert errors_of(excinfo) == [((field,), "value_error")]
    low, high = SIZE_LIMITS[ModelFamily(family)]
    assert f"between {low} and {high} for {family}, got {side}" in str(excinfo.value)


def test_size_limits_per_family() -> None:
    assert SIZE_LIMITS == {ModelFamily.SD15: (256, 1024), ModelFamily.SDXL: (512, 2048)}


def test_bad_family_reports_only_the_family() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(model_family="sd3", width=100))
    assert errors_of(excinfo) == [(("model_family",), "enum")]


def test_order_of_10000_images_is_allowed() -> None:
    spec = JobSpec.model_validate(
        job(prompts=[{"text": "a", "count": 5000}, {"text": "b", "count": 5000}])
    )
    assert spec.total_images == 10_000


def test_order_over_10000_images_is_rejected_at_prompts() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(
            job(prompts=[{"text": "a", "count": 5000}, {"text": "b", "count": 5001}])
        )
    assert errors_of(excinfo) == [(("prompts",), "value_error")]
    assert "at most 10000 images, got 10001" in str(excinfo.value)


@pytest.mark.parametrize(
    ("prompts", "loc", "kind"),
    [
        ([], ("prompts",), "too_short"),
        ([{"text": "a", "count": 1}] * 101, ("prompts",), "too_long"),
        ([{"text": "a", "count": 0}], ("prompts", 0, "count"), "greater_than_equal"),
        ([{"text": "a", "count": 10_001}], ("prompts", 0, "count"), "less_than_equal"),
        ([{"text": "", "count": 1}], ("prompts", 0, "text"), "string_too_short"),
        ([{"text": "   ", "count": 1}], ("prompts", 0, "text"), "string_too_short"),
        ([{"text": "x" * 2001, "count": 1}], ("prompts", 0, "text"), "string_too_long"),
        ([{"text": "a", "count": 1, "weight": 2}], ("prompts", 0, "weight"), "extra_forbidden"),
    ],
)
def test_prompt_errors_are_located(
    prompts: list[dict[str, Any]], loc: tuple[Any, ...], kind: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(prompts=prompts))
    assert errors_of(excinfo) == [(loc, kind)]


def test_prompt_text_is_stripped() -> None:
    assert PromptSpec.model_validate({"text": "  a fox  ", "count": 1}).text == "a fox"


@pytest.mark.parametrize("value", ["512", 1.5, 512.0, True])
@pytest.mark.parametrize("field", ["width", "height", "steps"])
def test_ints_are_strict(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(**{field: value}))
    assert [e["loc"] for e in excinfo.value.errors()] == [(field,)]


@pytest.mark.parametrize("raw", ['"4"', "1.5", "4.0"])
def test_count_is_strict_in_json(raw: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate_json('{"prompts": [{"text": "a", "count": ' + raw + "}]}")
    assert errors_of(excinfo) == [(("prompts", 0, "count"), "int_type")]


def test_width_as_string_rejected_in_json() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate_json('{"prompts": [{"text": "a", "count": 1}], "width": "512"}')
    assert errors_of(excinfo) == [(("width",), "int_type")]


@pytest.mark.parametrize(("steps", "ok"), [(1, True), (150, True), (0, False), (151, False)])
def test_steps_bounds(steps: int, ok: bool) -> None:
    if ok:
        assert JobSpec.model_validate(job(steps=steps)).steps == steps
    else:
        with pytest.raises(ValidationError) as excinfo:
            JobSpec.model_validate(job(steps=steps))
        assert [e["loc"] for e in excinfo.value.errors()] == [("steps",)]


@pytest.mark.parametrize(
    ("cfg", "ok"),
    [("1", True), ("30", True), ("7.5", True), ("0.5", False), ("30.5", False), ("7.25", False)],
)
def test_cfg_scale_bounds(cfg: str, ok: bool) -> None:
    if ok:
        assert JobSpec.model_validate(job(cfg_scale=cfg)).cfg_scale == Decimal(cfg)
    else:
        with pytest.raises(ValidationError) as excinfo:
            JobSpec.model_validate(job(cfg_scale=cfg))
        assert [e["loc"] for e in excinfo.value.errors()] == [("cfg_scale",)]


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(widht=512))
    assert errors_of(excinfo) == [(("widht",), "extra_forbidden")]


def test_sampler_is_an_automatic1111_name() -> None:
    spec = JobSpec.model_validate(job(sampler="DPM++ 2M Karras"))
    assert spec.sampler is Sampler.DPM_2M_KARRAS
    with pytest.raises(ValidationError):
        JobSpec.model_validate(job(sampler="dpmpp_2m"))


# --- SeedPolicy ---
def test_fixed_seed_policy_needs_base() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(seed={"kind": "fixed"}))
    assert errors_of(excinfo) == [(("seed",), "value_error")]
    assert "needs 'base'" in str(excinfo.value)


def test_random_seed_policy_forbids_base() -> None:
    with pytest.raises(ValidationError) as excinfo:
        JobSpec.model_validate(job(seed={"kind": "random", "base": 5}))
    assert errors_of(excinfo) == [(("seed",), "value_error")]
    assert "only allowed with kind 'fixed'" in str(excinfo.value)


@pytest.mark.parametrize("base", [0, 42, 2**32 - 1])
def test_fixed_seed_policy_keeps_base(base: int) -> None:
    assert SeedPolicy.model_validate({"kind": "fixed", "base": base}).base == base


@pytest.mark.parametrize("base", [-1, 2**32, "7"])
def test_fixed_seed_base_range_and_type(base: object) -> None:
    with pytest.raises(ValidationError) as excinfo:
        SeedPolicy.model_validate({"kind": "fixed", "base": base})
    assert [e["loc"][0] for e in excinfo.value.errors()] == ["base"]


def test_seed_kind_is_closed() -> None:
    with pytest.raises(ValidationError) as excinfo:
        SeedPolicy.model_validate({"kind": "sequential", "base": 1})
    assert [e["loc"] for e in excinfo.value.errors()] == [("kind",)]


# --- Constraints ---
def test_constraints_in_rejects_past_deadline() -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(ValidationError) as excinfo:
        ConstraintsIn.model_validate({"deadline": past.isoformat()})
    assert errors_of(excinfo) == [(("deadline",), "value_error")]
    assert "deadline must be in the future" in str(excinfo.value)


def test_constraints_in_rejects_naive_deadline() -> None:
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
    with pytest.raises(ValidationError) as excinfo:
        ConstraintsIn.model_validate({"deadline": naive.isoformat()})
    assert errors_of(excinfo) == [(("deadline",), "timezone_aware")]


def test_constraints_in_normalises_future_deadline_to_utc() -> None:
    tz = timezone(timedelta(hours=2))
    local = (datetime.now(UTC) + timedelta(days=1)).astimezone(tz)
    parsed = ConstraintsIn.model_validate({"deadline": local.isoformat()})
    assert parsed.deadline == local
    assert parsed.deadline is not None and parsed.deadline.utcoffset() == timedelta(0)


def test_constraints_in_without_deadline() -> None:
    assert ConstraintsIn.model_validate({"deadline": None}).deadline is None
    assert ConstraintsIn().deadline is None


@pytest.mark.parametrize("price", ["-0.000001", "-1"])
def test_constraints_in_rejects_negative_price(price: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        ConstraintsIn.model_validate({"max_price_per_image_usd": price})
    assert errors_of(excinfo) == [(("max_price_per_image_usd",), "greater_than_equal")]


def test_price_has_at_most_six_decimal_places() -> None:
    assert ConstraintsIn.model_validate(
        {"max_price_per_image_usd": "0.000001"}
    ).max_price_per_image_usd == Decimal("0.000001")
    with pytest.raises(ValidationError) as excinfo:
        ConstraintsIn.model_validate({"max_price_per_image_usd": "0.0000001"})
    assert [e["loc"] for e in excinfo.value.errors()] == [("max_price_per_image_usd",)]


def test_plain_constraints_load_a_past_deadline() -> None:
    past = datetime(2020, 5, 1, 10, 0, tzinfo=UTC)
    loaded = Constraints.model_validate(
        {"deadline": past.isoformat(), "max_price_per_image_usd": "0.01"}
    )
    assert loaded.deadline == past
    assert loaded.max_price_per_image_usd == Decimal("0.01")


def test_quote_request_uses_the_future_only_constraints() -> None:
    past = datetime.now(UTC) - timedelta(seconds=5)
    with pytest.raises(ValidationError) as excinfo:
        QuoteRequest.model_validate({"job": job(), "constraints": {"deadline": past.isoformat()}})
    assert [e["loc"] for e in excinfo.value.errors()] == [("constraints", "deadline")]
    default = QuoteRequest.model_validate({"job": job()})
    assert default.constraints == ConstraintsIn()


def option(option_id: str, *, deadline: bool, budget: bool) -> QuoteOption:
    return QuoteOption(
        option_id=option_id,
        label="cheapest",
        provider="fake",
        gpu="RTX 4090",
        start_at=NOW,
        expected_completion_at=NOW + timedelta(minutes=40),
        completes_at=NOW + timedelta(hours=1),
        price_per_image_usd=Decimal("0.001"),
        total_usd=Decimal("0.004"),
        meets_deadline=deadline,
        meets_budget=budget,
    )


def stored_quote(deadline: datetime, options: list[QuoteOption]) -> Quote:
    return Quote(
        quote_id="q-1",
        job=JobSpec.model_validate(job()),
        constraints=Constraints(deadline=deadline),
        options=options,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def test_stored_quote_loads_after_its_deadline() -> None:
    quote = stored_quote(
        datetime(2020, 1, 1, tzinfo=UTC), [option("opt-a", deadline=True, budget=True)]
    )
    reloaded = Quote.model_validate_json(quote.model_dump_json())
    assert reloaded == quote
    assert reloaded.constraints.deadline == datetime(2020, 1, 1, tzinfo=UTC)


def test_an_option_stored_before_expected_completion_reads_it_as_the_promise() -> None:
    stored = option("opt-a", deadline=True, budget=True).model_dump(mode="json")
    del stored["expected_completion_at"]
    reloaded = QuoteOption.model_validate(stored)
    assert reloaded.expected_completion_at == reloaded.completes_at == NOW + timedelta(hours=1)
    sooner = QuoteOption.model_validate(
        {**stored, "expected_completion_at": (NOW + timedelta(minutes=20)).isoformat()}
    )
    assert sooner.expected_completion_at == NOW + timedelta(minutes=20)


def test_quote_feasible_and_option_lookup() -> None:
    a = option("opt-a", deadline=True, budget=False)
    b = option("opt-b", deadline=False, budget=True)
    quote = stored_quote(NOW, [a, b])
    assert quote.feasible is False
    assert quote.option("opt-b") == b
    assert quote.option("opt-z") is None
    assert stored_quote(NOW, [a, option("opt-c", deadline=True, budget=True)]).feasible is True
    assert stored_quote(NOW, []).feasible is False


def test_order_request_strips_and_bounds_ids() -> None:
    request = OrderRequest.model_validate({"quote_id": "  q-1 ", "option_id": "opt-a"})
    assert (request.quote_id, request.option_id) == ("q-1", "opt-a")
    with pytest.raises(ValidationError) as excinfo:
        OrderRequest.model_validate({"quote_id": "", "option_id": "x" * 65, "extra": 1})
    assert sorted(str(e["loc"]) for e in excinfo.value.errors()) == [
        "('extra',)",
        "('option_id',)",
        "('quote_id',)",
    ]


# --- Order life cycle ---
TERMINAL = [
    OrderState.COMPLETED,
    OrderState.PARTIALLY_COMPLETED,
    OrderState.FAILED,
    OrderState.CANCELLED,
    OrderState.EXPIRED,
]


@pytest.mark.parametrize("state", TERMINAL)
def test_terminal_states_have_no_exits(state: OrderState) -> None:
    assert TRANSITIONS.get(state, frozenset()) == frozenset()


def test_transition_table() -> None:
    expected = {
        # an acceptance that never finished fails
        OrderState.QUOTED: {OrderState.ACCEPTED, OrderState.CANCELLED, OrderState.FAILED},
        # an accepted order may end before it renders: its tasks all failed, or time ran out
        OrderState.ACCEPTED: {
            OrderState.RENDERING,
            OrderState.COMPLETED,
            OrderState.PARTIALLY_COMPLETED,
            OrderState.FAILED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        },
        OrderState.RENDERING: {
            OrderState.COMPLETED,
            OrderState.PARTIALLY_COMPLETED,
            OrderState.FAILED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        },
    }
    assert expected == TRANSITIONS


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (OrderState.CANCELLED, {OrderState.QUOTED, OrderState.ACCEPTED, OrderState.RENDERING}),
        (OrderState.COMPLETED, {OrderState.ACCEPTED, OrderState.RENDERING}),
        (OrderState.ACCEPTED, {OrderState.QUOTED}),
        (OrderState.RENDERING, {OrderState.ACCEPTED}),
        (OrderState.EXPIRED, {OrderState.ACCEPTED, OrderState.RENDERING}),
        (OrderState.PARTIALLY_COMPLETED, {OrderState.ACCEPTED, OrderState.RENDERING}),
        (OrderState.FAILED, {OrderState.QUOTED, OrderState.ACCEPTED, OrderState.RENDERING}),
        (OrderState.QUOTED, set()),
    ],
)
def test_sources_of(target: OrderState, sources: set[OrderState]) -> None:
    assert sources_of(target) == frozenset(sources)


def test_completed_is_not_reachable_from_quoted() -> None:
    assert OrderState.QUOTED not in sources_of(OrderState.COMPLETED)


def test_open_and_renderable_states() -> None:
    assert frozenset({OrderState.QUOTED, OrderState.ACCEPTED, OrderState.RENDERING}) == OPEN_STATES
    assert frozenset({OrderState.ACCEPTED, OrderState.RENDERING}) == RENDERABLE_STATES
    assert all(s not in TRANSITIONS for s in TERMINAL)


# --- Work items ---
@pytest.mark.parametrize(
    ("prompt_index", "seed", "key"),
    [
        (0, 0, "images/t-1/o-abc/000/0.png"),
        (7, 123456, "images/t-1/o-abc/007/123456.png"),
        (99, 4294967295, "images/t-1/o-abc/099/4294967295.png"),
        (1234, 5, "images/t-1/o-abc/1234/5.png"),
    ],
)
def test_image_key(prompt_index: int, seed: int, key: str) -> None:
    assert image_key("t-1", "o-abc", prompt_index, seed) == key


def render_task(seed: int, batch_size: int) -> RenderTask:
    return builders.render_task(seed, batch_size, prompt_index=2)


def test_render_task_seeds_and_id() -> None:
    task = render_task(1000, 4)
    assert task.seeds == [1000, 1001, 1002, 1003]
    assert render_task(5, 1).seeds == [5]
    assert task.task_id == "o-1:2:1000"
