"""`keyword_only`: options are keyword-only; 0.1-style positional options still work with one
FutureWarning naming them; errors name what went wrong; the signature stays visible."""

from __future__ import annotations

import inspect
import warnings
from typing import TypedDict

import pytest

from pl_saliency import DeletionAUC
from pl_saliency import GradCAM
from pl_saliency._keywords import declared_options
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


# ---------------------------------------------------------------- declared_options: one declaration per option

class _Opts(TypedDict, total=False):
    steps: int
    order: str
    extra: int


class _Passed(TypedDict, total=False):
    sync_on_compute: bool


_TABLE = {"order": "morf", "steps": 50}


def test_declared_options_signature_defaults_and_binding():
    @declared_options(_Opts, _TABLE, extra=3)
    def run(x, *, flag=False, **settings):
        return x, flag, settings

    sig = inspect.signature(run)
    assert [(p.name, p.kind.name, p.default) for p in sig.parameters.values()] == [
        ("x", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("flag", "KEYWORD_ONLY", False),  # names not in the table first, in their own order
        ("extra", "KEYWORD_ONLY", 3),  # default from the override
        ("order", "KEYWORD_ONLY", "morf"),  # then the table's order, not the TypedDict's
        ("steps", "KEYWORD_ONLY", 50),
    ]
    assert sig.parameters["steps"].annotation is int
    # every option reaches the function, defaults filled in
    assert run(1, steps=5) == (1, False, {"extra": 3, "order": "morf", "steps": 5})
    with pytest.raises(TypeError, match="unexpected keyword argument 'step'"):
        run(1, step=5)
    with pytest.raises(TypeError):
        run(1, 2)  # options stay keyword-only


def test_declared_options_leading_and_forwarded():
    class Both(_Opts, _Passed, total=False):
        pass

    @declared_options(Both, _TABLE, leading=("extra",), extra=0, forwarded=_Passed)
    def init(self, **settings):
        return settings

    names = list(inspect.signature(init).parameters)
    assert names == ["self", "extra", "order", "steps", "kwargs"]  # forwarded names are not listed
    assert init("s", sync_on_compute=False, anything=1) == {"extra": 0, "order": "morf", "steps": 50,
                                                           "sync_on_compute": False, "anything": 1}


def test_declared_options_refuses_incomplete_declarations():
    with pytest.raises(TypeError, match=r"no default for \['extra'\]"):
        declared_options(_Opts, _TABLE)
    with pytest.raises(TypeError, match=r"undeclared names \['nope'\]"):
        declared_options(_Opts, _TABLE, extra=1, nope=2)
    with pytest.raises(TypeError, match="must end with \\*\\*settings"):
        declared_options(_Opts, _TABLE, extra=1)(lambda x: x)
    with pytest.raises(TypeError, match=r"declares \['steps'\] itself"):
        declared_options(_Opts, _TABLE, extra=1)(lambda x, *, steps=1, **settings: x)


def test_package_signatures_come_from_one_table():
    """The curve functions and Metric classes list every option with the table's default (or their own
    documented override), and the keyword_only deprecation path still maps positionals in that order."""
    from pl_saliency.functional import deletion_auc
    from pl_saliency.functional import insertion_auc
    from pl_saliency.functional import road
    from pl_saliency.metrics import RegionPerturbation
    from pl_saliency.metrics import ROADMorf
    from pl_saliency.spec import OPTION_DEFAULTS

    for fn in (deletion_auc, insertion_auc):
        params = inspect.signature(fn).parameters
        assert [n for n in params if n in OPTION_DEFAULTS] == [n for n in OPTION_DEFAULTS if n in params]
        assert all(params[n].default == OPTION_DEFAULTS[n] for n in params if n in OPTION_DEFAULTS and n != "filler")
    assert inspect.signature(insertion_auc).parameters["filler"].default == "blur"
    assert list(inspect.signature(road).parameters)[4:6] == ["order", "percentages"]
    assert list(inspect.signature(RegionPerturbation).parameters)[:4] == ["patch_size", "order", "regions", "filler"]
    assert "amp_dtype" in inspect.signature(ROADMorf).parameters  # speed options now listed, not hidden in **kwargs
    with pytest.warns(FutureWarning, match="Passing `percentages`, `filler`"):
        m = ROADMorf((20, 40), "zeros")
    assert m.percentages == (20.0, 40.0) and m.filler.key == "zeros"
    with pytest.warns(FutureWarning):
        d = DeletionAUC(None, "lerf", 10)
    assert (d.order, d.steps) == ("lerf", 10)
    # torchmetrics' options still pass through
    assert DeletionAUC(sync_on_compute=False).sync_on_compute is False
    with pytest.raises(ValueError, match="Unexpected keyword arguments"):
        DeletionAUC(not_an_option=1)


def test_options_of_takes_the_twins_options_and_refuses_its_per_call_keywords():
    from pl_saliency.functional import removal_realism
    from pl_saliency.metrics import FaithfulnessCorrelation
    from pl_saliency.metrics import MaxSensitivity
    from pl_saliency.metrics import RemovalRealism

    twin = inspect.signature(removal_realism).parameters
    own = inspect.signature(RemovalRealism).parameters
    shared = [n for n in twin if twin[n].kind is inspect.Parameter.KEYWORD_ONLY and n not in ("reduction", "return_curves")]
    assert [n for n in own][: len(shared)] == shared
    assert all(own[n].default == twin[n].default for n in shared)
    assert list(own)[-2:] == ["keep_per_sample", "kwargs"]
    for make in (lambda: RemovalRealism(reduction="none"), lambda: FaithfulnessCorrelation(subsets=None),
                 lambda: MaxSensitivity(perturbations=None)):
        with pytest.raises(ValueError, match="Unexpected keyword arguments"):
            make()
    assert FaithfulnessCorrelation(n_runs=5, sync_on_compute=False).sync_on_compute is False


def test_keywords_of_borrows_the_keyword_options_of_the_function_it_calls():
    """``keywords_of``: the borrowed options keep their names, types, defaults and order; a call binds
    them (defaults filled, an unknown keyword refused); the package's users show the callee's options."""
    from pl_saliency._keywords import keywords_of
    from pl_saliency.analysis import hyperparameter_robustness
    from pl_saliency.analysis import map_divergence
    from pl_saliency.perturbation.engine import random_order_curves

    def callee(x, values, *, fixed: dict | None = None, keep: bool = False, tag: str = "a"):
        return x, values, fixed, keep, tag

    @keywords_of(callee, drop=("tag",))
    def caller(x, a, b, **options):
        return callee(x, (a, b), **options)

    params = inspect.signature(caller).parameters
    assert list(params) == ["x", "a", "b", "fixed", "keep"]
    assert params["keep"].default is False and params["keep"].kind is inspect.Parameter.KEYWORD_ONLY
    assert caller(1, 2, 3, keep=True) == (1, (2, 3), None, True, "a")
    with pytest.raises(TypeError, match="tag"):
        caller(1, 2, 3, tag="b")
    with pytest.raises(TypeError, match="drops names it does not take"):
        keywords_of(callee, drop=("nope",))
    with pytest.raises(TypeError, match="must end with"):
        keywords_of(callee)(lambda x: x)
    with pytest.raises(TypeError, match=r"declares \['keep'\] itself"):
        keywords_of(callee)(lambda x, keep=1, **o: x)

    hp = inspect.signature(hyperparameter_robustness).parameters
    md = inspect.signature(map_divergence).parameters
    assert [(p.name, p.default) for p in md.values() if p.kind is p.KEYWORD_ONLY] == [
        (p.name, p.default) for p in hp.values() if p.kind is p.KEYWORD_ONLY and p.name != "fillers"
    ]
    control = inspect.signature(DeletionAUC.control_scores).parameters
    engine = inspect.signature(random_order_curves).parameters
    assert {n: control[n].default for n in ("repeats", "seed", "context")} == {n: engine[n].default for n in ("repeats", "seed", "context")}
    assert "speed" not in control
