"""The page an invitation link opens: /invite/<token>/.

GET shows the project and the role offered. A logged-out visitor is offered sign-up (open to
them because this session opened a usable invitation: ``annotator.accounts``) or login, each
coming back here; a logged-in one accepts with a POST (CSRF-protected) and lands on the
project. A token that matches no invitation is a plain 404, like any unknown page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from annotator.accounts import session_invitation_remember
from annotator.views._common import request_user
from projects.invitations import (
    InvitationError,
    invitation_accept,
    invitation_get,
    invitation_problem,
)
from projects.models import Invitation, Membership


def _invitation_page(
    request: HttpRequest, invitation: Invitation, token: str, *, problem: str | None
) -> HttpResponse:
    here = reverse("invitation", kwargs={"token": token})
    user = request.user
    member = (
        Membership.objects.filter(project=invitation.project, user_id=user.pk).first()
        if user.is_authenticated
        else None
    )
    context = {
        "invitation": invitation,
        "project": invitation.project,
        "problem": problem,
        "member": member,
        "here": here,
        "signup_url": f"{reverse('account_signup')}?{urlencode({'next': here})}",
        "login_url": f"{reverse('login')}?{urlencode({'next': here})}",
    }
    # 410 Gone: the link was real but no longer works.
    return render(request, "annotator/invitation.html", context, status=410 if problem else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    found = invitation_get(token=token)
    if found is None:
        raise Http404("No such page")
    if request.method == "GET":
        problem = invitation_problem(found)
        if problem is None and not request.user.is_authenticated:
            session_invitation_remember(request, found)
        return _invitation_page(request, found, token, problem=problem)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        accepted = invitation_accept(token=token, user=request_user(request))
    except InvitationError as exc:
        return _invitation_page(request, found, token, problem=str(exc))
    membership = accepted.membership
    if accepted.joined:
        role = membership.get_role_display()
        messages.success(request, f"Welcome to {found.project.name}: you joined as {role}.")
    else:
        messages.info(
            request,
            f"You are a member of {found.project.name} already, as "
            f"{membership.get_role_display()}; your role stays.",
        )
    return redirect("project_detail", slug=found.project.slug)
