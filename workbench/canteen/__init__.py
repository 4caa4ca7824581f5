"""明厨亮灶: school-canteen kitchen video compliance, from camera frames to rectified cases.

classes      the detector's classes and the violations they evidence
synthkitchen labelled synthetic kitchens (images and videos with a ground-truth timeline)
train        training, export and box evaluation of the kitchen detector (ultralytics)
yolo_env     offline ultralytics settings (call before importing ultralytics)
"""
