"""Writes for projects, their members, species and attributes (the admins' management pages).

Changes that touch labels (merging species, removing an attribute someone ticked) live with the
labels, in ``activelearn``.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from django.contrib.auth.models import Permission, User
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from projects.locks import project_lock
from projects.models import (
    DEFAULT_ATTRIBUTES,
    DEFAULT_BACKBONE,
    Attribute,
    Membership,
    Project,
    ProjectDetector,
    Role,
    Species,
)


class ProjectError(ValueError):
    """A project was not created as asked; the message says why. Nothing was changed."""


PROJECT_NAME_MAX = 200  # Project.name's max_length
SLUG_MAX = 200  # Project.slug's max_length
# A slug for a name with no ASCII letter or digit in it (Cyrillic, Chinese, Arabic ...): the
# URLs take ASCII slugs only (<slug:slug>), so such projects are project, project-2, ...
SLUG_FALLBACK = "project"
# Creations lost to another one taking the same slug at the same moment, before giving up.
_SLUG_ATTEMPTS = 10
# A seed is a PositiveIntegerField: at most 2**31 - 1 on every database.
SEED_MAX = 2**31 - 1


def text_control_characters(text: str) -> list[str]:
    """The control characters (and lone surrogates, which no database stores) in ``text``, as
    ``repr`` would show them: a name with one would print wrong or break a CSV row."""
    return sorted({repr(ch)[1:-1] for ch in text if unicodedata.category(ch) in ("Cc", "Cs")})


def _project_name_clean(name: str) -> str:
    """``name`` stripped; ProjectError when empty, too long, with control characters or taken."""
    clean = name.strip()
    if not clean:
        raise ProjectError("a project needs a name")
    if len(clean) > PROJECT_NAME_MAX:
        raise ProjectError(
            f"a project name has at most {PROJECT_NAME_MAX} characters, this one {len(clean)}"
        )
    bad = text_control_characters(clean)
    if bad:
        raise ProjectError(f"a project name cannot contain control characters ({', '.join(bad)})")
    if Project.objects.filter(name=clean).exists():
        raise ProjectError(f"there is a project called {clean!r} already")
    return clean


def project_slug_free(*, name: str) -> str:
    """A slug for ``name`` that no project has: ``slugify(name)`` (ASCII, as the URLs want),
    ``SLUG_FALLBACK`` when that is empty, then -2, -3 ... until one is free.

    Only a proposal: another creation may take it before this one is saved, which
    ``project_create`` detects by the unique constraint and retries.
    """
    base = slugify(name)[:SLUG_MAX].strip("-") or SLUG_FALLBACK
    # Every candidate starts with this (a suffix of up to 10 digits cuts the base from
    # SLUG_MAX - 11 on; slugify leaves no "--", so rstrip removes at most one more).
    prefix = base[: SLUG_MAX - 12]
    taken = set(Project.objects.filter(slug__startswith=prefix).values_list("slug", flat=True))
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix
    return candidate


def project_create(
    *,
    name: str,
    created_by: User | None,
    seed: int = 0,
    backbone: str = DEFAULT_BACKBONE,
    backbone_weights: str = "imagenet",
    embedding_checkpoint: str = "",
    round_size: int = 100,
    detector: str = ProjectDetector.OFFLINE,
    detection_threshold: float = 0.2,
    min_box_pixels: int = 8,
) -> Project:
    """Create a project; its creator becomes its admin.

    Without options it gets the best offline configuration: ``DEFAULT_BACKBONE`` and the
    model's defaults for everything else (crop geometry, classifier, selection), each chosen
    by measurement on missouri-dev (benchmarks/README.md).

    ``embedding_checkpoint`` starts the project from a trained embedding (e.g. one made by
    ``pretrain_embedding`` on other camera-trap data, as the paper's did) instead of the
    backbone's ImageNet weights with a random head.

    The name is stripped; the slug is the name's (``project_slug_free``): a name whose slug a
    project has already gets -2, -3 ..., also when two projects are created at once.

    Raises:
        ProjectError: an empty or taken name, one longer than ``PROJECT_NAME_MAX`` or with
        control characters, a seed outside 0..2**31-1, a round size below 1, an unknown
        detector (``ProjectDetector``), a detection threshold outside 0..1 or a negative
        minimum box size. Nothing is created.
    """
    name = _project_name_clean(name)
    if detector not in ProjectDetector.values:
        choices = ", ".join(ProjectDetector.values)
        raise ProjectError(f"unknown detector {detector!r}; choose one of {choices}")
    if not 0.0 <= detection_threshold <= 1.0:
        raise ProjectError(f"the detection threshold lies in 0..1, got {detection_threshold}")
    if min_box_pixels < 0:
        raise ProjectError(f"the minimum box size cannot be negative, got {min_box_pixels}")
    if not 0 <= seed <= SEED_MAX:
        raise ProjectError(f"the seed must be between 0 and {SEED_MAX}, got {seed}")
    if round_size < 1:
        raise ProjectError(f"the round size must be at least 1, got {round_size}")
    with transaction.atomic():
        project = _project_insert(
            name=name,
            seed=seed,
            backbone=backbone,
            backbone_weights=backbone_weights,
            embedding_checkpoint=str(Path(embedding_checkpoint).resolve())
            if embedding_checkpoint
            else "",
            round_size=round_size,
            created_by=created_by,
            detector=detector,
            detection_threshold=detection_threshold,
            min_box_pixels=min_box_pixels,
        )
        Attribute.objects.bulk_create(
            Attribute(project=project, name=name, key=key, position=position)
            for position, (name, key) in enumerate(DEFAULT_ATTRIBUTES)
        )
        if created_by is not None:
            membership_set(project=project, user=created_by, role=Role.ADMIN)
    return project


def _project_insert(*, name: str, **fields: Any) -> Project:
    """Insert the project under a free slug, retrying when a concurrent creation took it."""
    for _ in range(_SLUG_ATTEMPTS):
        slug = project_slug_free(name=name)
        try:
            with transaction.atomic():  # a savepoint: the IntegrityError leaves the rest usable
                return Project.objects.create(name=name, slug=slug, **fields)
        except IntegrityError:
            if Project.objects.filter(name=name).exists():
                raise ProjectError(f"there is a project called {name!r} already") from None
            # Someone took the slug between the look-up and the insert: look again.
    raise ProjectError(f"no free slug for {name!r} after {_SLUG_ATTEMPTS} attempts; try again")


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    """Give ``user`` the ``role`` in ``project`` (create or change)."""
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def species_ensure(*, project: Project, names: list[str]) -> list[Species]:
    """Add the species in ``names`` that the project lacks; return all of them in order.
    Names are cleaned by ``species_name_check``.

    A name the project has as a species' name, scientific name or one of its common names
    (case-insensitively) is that species (an importer's "Vulpes vulpes" or "renard" is the
    project's "red fox"), not a new one: ``species_by_any_name``.

    Raises:
        SpeciesError: a name that check refuses; nothing is added then.
    """
    names = [species_name_check(name) for name in names]
    species = list(project.species.all())
    existing = species_by_any_name(species)
    position = max((s.position for s in species), default=-1) + 1
    for name in names:
        if name.lower() not in existing:
            existing[name.lower()] = Species.objects.create(
                project=project, name=name, position=position
            )
            position += 1
    return list(project.species.all())


def species_by_any_name(species: list[Species]) -> dict[str, Species]:
    """{lower-cased name: species} by name, scientific name and common names; a name wins
    over another species' scientific or common name, a scientific name over a common one."""
    found: dict[str, Species] = {}
    for s in species:
        for common in s.common_names or ():
            if isinstance(common, str) and common.strip():
                found[common.strip().lower()] = s
    for s in species:
        if s.scientific_name:
            found[s.scientific_name.lower()] = s
    found.update({s.name.lower(): s for s in species})
    return found


class MemberError(ValueError):
    """A change to the members was refused; the message says why. Nothing was changed."""


def _admins_left(*, project: Project, without: Membership) -> bool:
    """Whether the project keeps an admin when ``without`` stops being one.

    Locks the project's membership rows, so that two admins demoting each other at the same
    moment cannot both succeed.
    """
    admins = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.ADMIN)
        .values_list("pk", flat=True)
    )
    return any(pk != without.pk for pk in admins)


def member_role_change(*, project: Project, membership_id: int, role: str) -> Membership:
    """Give the member ``membership_id`` of ``project`` the ``role``.

    Raises MemberError for an unknown member or role, or when it would leave the project
    without an admin.
    """
    if role not in Role.values:
        raise MemberError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")
    with transaction.atomic():
        membership = _member_get(project=project, membership_id=membership_id)
        if (
            membership.role == Role.ADMIN
            and role != Role.ADMIN
            and not _admins_left(project=project, without=membership)
        ):
            raise MemberError(
                f"{membership.user.username} is the project's last admin: make someone else "
                "admin first"
            )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def member_remove(*, project: Project, membership_id: int) -> User:
    """Remove the member ``membership_id`` from ``project``; returns the user.

    Their labels stay (labels are never lost). Raises MemberError for an unknown member, or
    when the member is the project's last admin.
    """
    with transaction.atomic():
        membership = _member_get(project=project, membership_id=membership_id)
        if membership.role == Role.ADMIN and not _admins_left(project=project, without=membership):
            raise MemberError(
                f"{membership.user.username} is the project's last admin and cannot be removed"
            )
        membership.delete()
    return membership.user


def _member_get(*, project: Project, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(project=project, pk=membership_id)
        .first()
    )
    if membership is None:
        raise MemberError(f"member {membership_id} is not part of project {project.name!r}")
    return membership


class SpeciesError(ValueError):
    """A change to the species list was refused; the message says why. Nothing was changed."""


SPECIES_NAME_MAX = 200


def species_name_check(name: str) -> str:
    """``name`` as a species is called: stripped, each run of spaces made one.

    Raises:
        SpeciesError: an empty name, one longer than ``SPECIES_NAME_MAX`` (Species.name's
        max_length) or one with control characters (a tab or line break included: they
        would break a CSV row, a label button or, for NUL, the database).
    """
    bad = text_control_characters(name.strip())
    if bad:
        raise SpeciesError(
            f"a species name cannot contain control characters ({', '.join(bad)}): {name!r}"
        )
    name = " ".join(name.split())
    if not name:
        raise SpeciesError("a species needs a name")
    if len(name) > SPECIES_NAME_MAX:
        raise SpeciesError(
            f"a species name has at most {SPECIES_NAME_MAX} characters, "
            f"{name[:20]!r}... has {len(name)}"
        )
    return name


def _species_name_clean(*, project: Project, name: str, exclude_id: int | None = None) -> str:
    """``name`` checked (``species_name_check``); SpeciesError also when (case-insensitively)
    taken."""
    name = species_name_check(name)
    taken = Species.objects.filter(project=project, name__iexact=name)
    if exclude_id is not None:
        taken = taken.exclude(pk=exclude_id)
    if taken.exists():
        raise SpeciesError(f"the project has a species called {name!r} already")
    return name


def species_add(*, project: Project, name: str) -> Species:
    """Add a species at the end of the project's list. SpeciesError for a taken name."""
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one writer
        name = _species_name_clean(project=project, name=name)
        last = project.species.order_by("-position").values_list("position", flat=True).first()
        return Species.objects.create(
            project=project, name=name, position=0 if last is None else last + 1
        )


def species_rename(*, project: Project, species_id: int, name: str) -> Species:
    """Rename a species; its labels keep pointing at it. SpeciesError for a taken name."""
    with transaction.atomic():
        project_lock(project_id=project.pk)
        species = species_get(project=project, species_id=species_id)
        species.name = _species_name_clean(project=project, name=name, exclude_id=species.pk)
        species.save(update_fields=["name"])
    return species


def species_get(*, project: Project, species_id: int) -> Species:
    species = Species.objects.filter(project=project, pk=species_id).first()
    if species is None:
        raise SpeciesError(f"species {species_id} is not in project {project.name!r}")
    return species


class AttributeChangeError(ValueError):
    """A change to the attribute list was refused; the message says why. Nothing was changed."""


ATTRIBUTE_NAME_MAX = 100


# Keys the labelling pages use already (suggestions 1-5, not an animal, unknown, skip, undo,
# zoom, search): an attribute's hotkey must not take one of them.
LABELLING_KEYS = frozenset("12345nuszx/")


def _attribute_clean(
    *, project: Project, name: str, key: str, exclude_id: int | None = None
) -> tuple[str, str]:
    """(name, key) normalised; AttributeChangeError for an empty, long or taken name, or a
    key that is not one free lowercase letter or digit."""
    name = " ".join(name.split())
    key = key.strip().lower()
    if not name:
        raise AttributeChangeError("an attribute needs a name")
    if len(name) > ATTRIBUTE_NAME_MAX:
        raise AttributeChangeError(f"an attribute name has at most {ATTRIBUTE_NAME_MAX} characters")
    if len(key) != 1 or not (key.isascii() and key.isalnum()):
        raise AttributeChangeError(f"the key must be one letter or digit, not {key!r}")
    if key in LABELLING_KEYS:
        raise AttributeChangeError(
            f"the key {key!r} is taken by the labelling page "
            f"({' '.join(sorted(LABELLING_KEYS))} are reserved)"
        )
    others = Attribute.objects.filter(project=project)
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    if others.filter(name__iexact=name).exists():
        raise AttributeChangeError(f"the project has an attribute called {name!r} already")
    taken = others.filter(key=key).first()
    if taken is not None:
        raise AttributeChangeError(f"the key {key!r} is {taken.name!r}'s already")
    return name, key


def attribute_add(*, project: Project, name: str, key: str) -> Attribute:
    """Add a yes/no attribute at the end of the project's list, with its labelling hotkey."""
    with transaction.atomic():
        project_lock(project_id=project.pk)  # one writer
        name, key = _attribute_clean(project=project, name=name, key=key)
        last = project.attributes.order_by("-position").values_list("position", flat=True).first()
        return Attribute.objects.create(
            project=project, name=name, key=key, position=0 if last is None else last + 1
        )


def attribute_update(*, project: Project, attribute_id: int, name: str, key: str) -> Attribute:
    """Rename an attribute or change its key; labels keep pointing at it (they store its id)."""
    with transaction.atomic():
        project_lock(project_id=project.pk)
        attribute = attribute_get(project=project, attribute_id=attribute_id)
        attribute.name, attribute.key = _attribute_clean(
            project=project, name=name, key=key, exclude_id=attribute.pk
        )
        attribute.save(update_fields=["name", "key"])
    return attribute


def attribute_get(*, project: Project, attribute_id: int) -> Attribute:
    attribute = Attribute.objects.filter(project=project, pk=attribute_id).first()
    if attribute is None:
        raise AttributeChangeError(f"attribute {attribute_id} is not in project {project.name!r}")
    return attribute


# The site permission that lets a user create projects in the browser.
PROJECT_CREATE_PERMISSION = ("projects", "add_project")


def project_creator_set(*, user: User, allowed: bool) -> None:
    """Grant (or take back) ``user``'s site permission to create projects in the browser
    (``projects.add_project``). Superusers have it whatever this says; a permission a user has
    through a group is not taken back here."""
    app_label, codename = PROJECT_CREATE_PERMISSION
    permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    if allowed:
        user.user_permissions.add(permission)
    else:
        user.user_permissions.remove(permission)
