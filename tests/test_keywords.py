"""`keyword_only`: options are keyword-only; 0.1-style positional options still work with one
FutureWarning naming them; errors name what went wrong; the signature stays visible."""

from __future__ import annotations

import inspect
import warnings

import pytest

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency._keywords import keyword_only
from pl_saliency.perturbation import Blur


class Opts:
    @keyword_only
    def __init__(self, subject, *, steps=10, order="morf"):
        self.subject, self.steps, self.order = subject, steps, order


def test_keywords_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = Opts("s", steps=3)
    assert (o.subject, o.steps, o.order) == ("s", 3, "morf")


def test_positional_options_map_in_order_with_one_warning_naming_them():
    with pytest.warns(FutureWarning, match=r"Passing `steps`, `order` to Opts\(\) by position is deprecated") as record:
        o = Opts("s", 4, "lerf")
    assert len(record) == 1
    assert (o.steps, o.order) == (4, "lerf")


def test_too_many_positionals_and_duplicates_raise():
    with pytest.raises(TypeError, match=r"takes at most 3 arguments by position; got 4"):
        Opts("s", 1, "morf", 5)
    with pytest.raises(TypeError, match="got multiple values for argument `steps`"):
        Opts("s", 1, steps=2)


def test_signature_is_the_real_one():
    params = inspect.signature(Opts.__init__).parameters
    assert [p.name for p in params.values()] == ["self", "subject", "steps", "order"]
    assert params["steps"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(DeletionAUC).parameters["steps"].kind is inspect.Parameter.KEYWORD_ONLY


def test_var_positional_init_is_refused():
    with pytest.raises(TypeError, match="takes \\*args"):

        class Bad:
            @keyword_only
            def __init__(self, *args, steps=1):
                pass


def test_package_classes_keep_their_subject_positional():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradCAM("features.0")
    with pytest.warns(FutureWarning, match="`sigma`"):
        Blur(3.0)
