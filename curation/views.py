from django.http import HttpResponse


def dataset_list(request):
    return HttpResponse("")


def upload_list(request):
    return HttpResponse("")


def upload_create(request):
    return HttpResponse("")
