"""The "SatGen" Processing provider: lists the algorithms, icon, output formats."""

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.apply_model import ApplyModelAlgorithm
from .algorithms.check_dependencies import CheckDependenciesAlgorithm
from .algorithms.evaluate_synthesis import EvaluateSynthesisAlgorithm
from .algorithms.inpaint_clouds import InpaintCloudsAlgorithm
from .algorithms.render_map_target import RenderMapTargetAlgorithm
from .algorithms.synthesize import SynthesizeAlgorithm
from .algorithms.train_inpainting import TrainInpaintingAlgorithm
from .algorithms.train_synthesis import TrainSynthesisAlgorithm
from .algorithms.train_translation import TrainTranslationAlgorithm
from .algorithms.translate import TranslateAlgorithm
from .icon import ICON


class SatGenProvider(QgsProcessingProvider):
    def id(self):
        return "satgen"

    def name(self):
        return "SatGen"

    def longName(self):
        return "SatGen: generative models for satellite imagery"

    def icon(self):
        return QIcon(str(ICON))

    def loadAlgorithms(self):
        for alg in (ApplyModelAlgorithm(), RenderMapTargetAlgorithm(), TranslateAlgorithm(),
                    TrainTranslationAlgorithm(), InpaintCloudsAlgorithm(), TrainInpaintingAlgorithm(),
                    SynthesizeAlgorithm(), TrainSynthesisAlgorithm(), EvaluateSynthesisAlgorithm(),
                    CheckDependenciesAlgorithm()):
            self.addAlgorithm(alg)

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]  # the engine writes tiled, compressed GeoTIFF
