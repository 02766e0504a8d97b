"""Hypothesis strategies: any JSON value, and objects with plausible keys and values."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

BIG = st.sampled_from([10**300, -(10**300), 2**63, 2**31, 1e300, -1e300, 70.0, 70.5, 0.0, -0.0])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | BIG
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)


def json_values(scalars: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=6,
    )


ANY = json_values()


def plausible(
    keys: tuple[str, ...], values: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...] = (), noisy: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """An object with some of `keys` (always the `required` ones), each a plausible value or, when
    `noisy`, now and then any JSON value at all."""

    def value(key: str) -> st.SearchStrategy[Any]:
        good = values.get(key, ANY)
        return st.one_of(good, good, good, ANY) if noisy else good

    return st.fixed_dictionaries(
        {k: value(k) for k in required}, optional={k: value(k) for k in keys if k not in required}
    )
