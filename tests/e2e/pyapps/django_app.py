"""A minimal Django project in one module (its settings here), served with
``trioweb --wsgi django_app:application`` from this directory."""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="only for the tests",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)

import django  # noqa: E402  (after the settings, as Django wants)
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, HttpResponseRedirect  # noqa: E402
from django.urls import path, reverse  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

django.setup()


def home(request):
    return HttpResponse(f"Django: home is {reverse('home')}, page is {reverse('page', args=[7])}")


def page(request, number):
    return HttpResponse(f"page {number} at {request.path} ({request.get_full_path()})")


def moved(request):
    return HttpResponseRedirect(reverse("page", args=[1]))


@csrf_exempt
def echo(request):
    return HttpResponse(f"{request.method} {len(request.body)} {request.POST.get('name', '')}")


urlpatterns = [
    path("", home, name="home"),
    path("page/<int:number>/", page, name="page"),
    path("moved/", moved, name="moved"),
    path("echo/", echo, name="echo"),
]

application = get_wsgi_application()
